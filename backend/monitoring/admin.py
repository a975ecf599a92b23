from __future__ import annotations

from django import forms
from django.contrib import admin

from . import alerts, tiers
from .alerts import AlertChannel, AlertDelivery, AlertEpisode, AlertRule, AlertSilence
from .models import MonitoredServer, RetentionPolicy, Workload


@admin.register(MonitoredServer)
class MonitoredServerAdmin(admin.ModelAdmin):
    # The token hash is never shown; tokens are issued with `manage.py register_server`.
    list_display = ("slug", "name", "hostname", "is_active", "last_seen_at", "last_agent_version", "snapshot_count")
    list_filter = ("is_active",)
    search_fields = ("slug", "name", "hostname")
    readonly_fields = (
        "last_seen_at",
        "last_agent_version",
        "agent_packaging",
        "agent_platform",
        "agent_python",
        "agent_labels",
        "snapshot_count",
        "latest_snapshot_at",
        "token_created_at",
        "created_at",
    )
    fields = ("slug", "name", "hostname", "description", "is_active", *readonly_fields)
    actions = ("disable", "enable")

    @admin.action(description="Disable: refuse their samples")
    def disable(self, request, queryset):
        queryset.update(is_active=False)

    @admin.action(description="Enable: accept their samples")
    def enable(self, request, queryset):
        queryset.update(is_active=True)


class RetentionPolicyForm(forms.ModelForm):
    class Meta:
        model = RetentionPolicy
        fields = ("tier", "days")

    def clean(self):
        cleaned = super().clean()
        # The tier is read-only once the policy exists, so it is not among the form's fields then.
        tier, days = cleaned.get("tier", self.instance.tier), cleaned.get("days")
        if days is not None:
            try:
                tiers.check_retention_policy(tier, days)
            except tiers.RetentionError as exc:
                self.add_error("days", str(exc))
        return cleaned


@admin.register(RetentionPolicy)
class RetentionPolicyAdmin(admin.ModelAdmin):
    # The tiers are fixed; a DBA only changes how long each keeps its data.
    form = RetentionPolicyForm
    list_display = ("tier", "days", "updated_at")
    fields = ("tier", "days")

    def get_readonly_fields(self, request, obj=None):
        return ("tier",) if obj else ()

    def has_delete_permission(self, request, obj=None):
        return False


# --- alerting: the same checks as the rules file's --------------------------------------------


class AlertRuleForm(forms.ModelForm):
    class Meta:
        model = AlertRule
        fields = ["name", "when", "for_seconds", "repeat_seconds", "servers", "notify", "enabled"]

    def clean_when(self):
        try:
            alerts.condition(self.cleaned_data["when"])
        except alerts.RulesError as exc:
            raise forms.ValidationError(str(exc)) from None
        return self.cleaned_data["when"]

    def clean_servers(self):
        try:
            return alerts.selector(self.cleaned_data["servers"], "servers")
        except alerts.RulesError as exc:
            raise forms.ValidationError(str(exc)) from None


@admin.register(AlertRule)
class AlertRuleAdmin(admin.ModelAdmin):
    form = AlertRuleForm
    list_display = ("name", "when", "for_seconds", "enabled")
    list_filter = ("enabled",)
    filter_horizontal = ("notify",)


@admin.register(AlertChannel)
class AlertChannelAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "url")


@admin.register(AlertSilence)
class AlertSilenceAdmin(admin.ModelAdmin):
    list_display = ("pk", "rule", "server", "labels", "until", "comment")


@admin.register(AlertEpisode)
class AlertEpisodeAdmin(admin.ModelAdmin):
    list_display = ("rule", "server", "state", "started_at", "fired_at", "ended_at", "silenced")
    list_filter = ("state", "silenced")
    readonly_fields = [f.name for f in AlertEpisode._meta.fields]


@admin.register(AlertDelivery)
class AlertDeliveryAdmin(admin.ModelAdmin):
    list_display = ("episode", "channel", "event", "state", "attempts", "sent_at", "last_error")
    list_filter = ("state", "event")
    readonly_fields = [f.name for f in AlertDelivery._meta.fields]


@admin.register(Workload)
class WorkloadAdmin(admin.ModelAdmin):
    """Workload ranges as ingest wrote them: to look at, not to edit."""

    list_display = ("kind", "workload_id", "name", "username", "server", "first_seen", "last_seen")
    list_filter = ("kind",)
    search_fields = ("workload_id", "name", "username", "server__slug")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
