/* TrainWatch dashboard: asking the dashboard APIs. A request that finds the session ended goes to
   the sign-in page and comes back to the same view; any other error becomes an ApiError with the
   API's one-line message (status 0: the site could not be reached). Every request is recorded in
   `requests` (path, params, status, time sent), which tests and benchmarks read. */
(function () {
  "use strict";
  const TW = window.TW;
  const { clock } = TW;

  const requests = [];

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function get(path, params) {
    const query = new URLSearchParams(params || {}).toString();
    const url = path + (query ? "?" + query : "");
    const sentAt = Date.now();
    const record = { path, params: Object.fromEntries(new URLSearchParams(params || {})), status: null, at: sentAt };
    requests.push(record);
    if (requests.length > 500) requests.splice(0, 100); // a tab may stay open for weeks
    let response;
    try {
      response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
    } catch (err) {
      record.status = 0;
      throw new ApiError(0, "cannot reach TrainWatch");
    }
    record.status = response.status;
    if (response.status === 401) {
      // The session ended: sign in again and come back to this very view.
      location.assign("/accounts/login/?next=" + encodeURIComponent(location.pathname + location.search));
      throw new ApiError(401, "signed out");
    }
    const body = await response.json().catch(() => ({ ok: false, error: "unreadable answer" }));
    if (!response.ok) throw new ApiError(response.status, body.error || response.statusText);
    clock.fromResponse(response, sentAt, Date.now());
    return body;
  }

  TW.api = { get, requests, ApiError };
})();
