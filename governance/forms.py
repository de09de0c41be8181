"""Forms validate input and scope every choice to the request's organization."""

from __future__ import annotations

import zoneinfo

from django import forms
from django.contrib.auth import password_validation

from governance.audit_entries import KINDS
from governance.models import (
    WEEKDAYS,
    Membership,
    Organization,
    Role,
    Scope,
    Team,
    User,
    secret_name_validator,
    single_line_validator,
    slug_validator,
)

TIMEZONE_CHOICES = [(name, name) for name in sorted(zoneinfo.available_timezones())]
WEEKDAY_CHOICES = [(d, d.capitalize()) for d in WEEKDAYS]


class MemberChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Membership) -> str:
        return f"{obj.user.name} <{obj.user.email}>"


class MembersChoiceField(forms.ModelMultipleChoiceField):
    def label_from_instance(self, obj: Membership) -> str:
        return obj.user.name


def active_members(org: Organization):
    return Membership.objects.for_org(org).filter(is_active=True).select_related("user").order_by("user__name")


def apply_errors(form: forms.BaseForm, error: forms.ValidationError) -> None:
    """A service's ValidationError shown on the form, by field where the service named one."""
    if hasattr(error, "error_dict"):
        for field, errors in error.error_dict.items():
            form.add_error(field if field in form.fields else None, errors)
    else:
        form.add_error(None, error)


class TenantModelForm(forms.ModelForm):
    """A ModelForm for a tenant row: the organization comes from the request, never from the POST."""

    def __init__(self, *args, org: Organization, **kwargs):
        super().__init__(*args, **kwargs)
        self.instance.organization = org

    def validate_unique(self) -> None:
        # organization is not a form field, so ModelForm would skip the per-organization constraints.
        try:
            self.instance.validate_constraints()
        except forms.ValidationError as e:
            self._update_errors(e)


class OrganizationCreateForm(forms.Form):
    name = forms.CharField(max_length=200, validators=[single_line_validator])
    slug = forms.CharField(
        max_length=50,
        validators=[slug_validator],
        label="Address",
        help_text="Lowercase letters, digits and hyphens; used in URLs: /o/<address>/",
    )
    timezone = forms.ChoiceField(choices=TIMEZONE_CHOICES, initial="UTC")

    def clean_slug(self) -> str:
        slug = self.cleaned_data["slug"]
        if Organization.objects.filter(slug=slug).exists():
            raise forms.ValidationError(f'The address "{slug}" is taken; choose another.')
        return slug


class OrganizationSettingsForm(forms.ModelForm):
    timezone = forms.ChoiceField(choices=TIMEZONE_CHOICES)
    business_days = forms.MultipleChoiceField(choices=WEEKDAY_CHOICES, widget=forms.CheckboxSelectMultiple)

    class Meta:
        model = Organization
        fields = [
            "name",
            "timezone",
            "business_days",
            "business_start",
            "business_end",
            "require_two_factor",
            "raw_measurement_days",
        ]
        labels = {
            "require_two_factor": "Require two-factor authentication for admins and executives",
            "raw_measurement_days": "Keep raw measurements for (days)",
        }
        help_texts = {
            "require_two_factor": "Those who log in with a password confirm with an authenticator app; "
            "single sign-on logins rely on the identity provider's own.",
            "raw_measurement_days": "Older points are rolled up into one per KPI and day, by the KPI's aggregation "
            "(a sum stays a sum). Empty keeps every point.",
        }
        widgets = {
            "business_start": forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
            "business_end": forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
        }


class TeamForm(TenantModelForm):
    parent = forms.ModelChoiceField(queryset=Team.objects.none(), required=False, empty_label="(top level)")
    lead = MemberChoiceField(queryset=Membership.objects.none(), required=False, empty_label="(no lead)")

    class Meta:
        model = Team
        fields = ["name", "key", "parent", "lead"]
        help_texts = {"key": "Stable identifier used by manifests and the API, e.g. supply-chain."}

    def __init__(self, *args, org: Organization, **kwargs):
        super().__init__(*args, org=org, **kwargs)
        parents = Team.objects.for_org(org)
        if self.instance.pk:
            # A team cannot nest inside itself or one of its descendants.
            descendants = {self.instance.pk}
            frontier = {self.instance.pk}
            while frontier:
                frontier = set(parents.filter(parent_id__in=frontier).values_list("pk", flat=True)) - descendants
                descendants |= frontier
            parents = parents.exclude(pk__in=descendants)
        self.fields["parent"].queryset = parents
        self.fields["lead"].queryset = active_members(org)


class TeamMembersForm(forms.Form):
    members = MembersChoiceField(
        queryset=Membership.objects.none(), required=False, widget=forms.CheckboxSelectMultiple
    )

    def __init__(self, *args, org: Organization, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["members"].queryset = active_members(org)


class InviteForm(forms.Form):
    email = forms.EmailField()
    role = forms.ChoiceField(choices=Role.choices, initial=Role.MEMBER)
    teams = forms.ModelMultipleChoiceField(
        queryset=Team.objects.none(), required=False, widget=forms.CheckboxSelectMultiple
    )

    def __init__(self, *args, org: Organization, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["teams"].queryset = Team.objects.for_org(org)


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


class AuditFilterForm(forms.Form):
    verb = forms.ChoiceField(choices=[("", "All events"), *KINDS.items()], required=False, label="Kind")
    actor = forms.ModelChoiceField(
        queryset=Membership.objects.none(), required=False, empty_label="Anyone", label="Who"
    )
    q = forms.CharField(required=False, label="Search")
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}), label="Until (incl.)")
    # One object's history ("scorecards.kpi:12"), set by the object links of the log itself.
    object = forms.RegexField(regex=r"^[a-z_]+\.[a-z_]+:[0-9A-Za-z_-]{1,64}$", required=False, widget=forms.HiddenInput)

    def __init__(self, *args, org: Organization, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["actor"].queryset = Membership.objects.for_org(org).select_related("user")
        self.fields["actor"].label_from_instance = lambda m: m.user.name


class InvitationSignupForm(forms.Form):
    name = forms.CharField(max_length=150, label="Your name", validators=[single_line_validator])
    password1 = forms.CharField(
        widget=forms.PasswordInput,
        label="Password",
        help_text=password_validation.password_validators_help_text_html(),
    )
    password2 = forms.CharField(widget=forms.PasswordInput, label="Password again")

    def __init__(self, *args, email: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.email = email

    def clean(self):
        data = super().clean()
        if data.get("password1") and data.get("password1") != data.get("password2"):
            self.add_error("password2", "The two passwords differ.")
        elif data.get("password1"):
            try:
                password_validation.validate_password(
                    data["password1"], User(email=self.email, name=data.get("name", ""))
                )
            except forms.ValidationError as e:
                self.add_error("password1", e)
        return data


class SecretForm(forms.Form):
    name = forms.CharField(
        max_length=64,
        validators=[secret_name_validator],
        help_text="Lowercase letters, digits and _, e.g. <code>warehouse_dsn</code>: the name sources use "
        "(<code>dsn_secret: warehouse_dsn</code>). Setting an existing name replaces its value.",
    )
    # Write-only: the page never renders a value back, not even after a failed submit.
    value = forms.CharField(
        max_length=8192,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off", "spellcheck": "false"}),
        help_text="Stored encrypted; nobody can read it back here or through the API, only the organization's "
        "pulls use it.",
    )


class ApiTokenForm(forms.Form):
    PERSONAL, ORGANIZATION = "personal", "organization"

    name = forms.CharField(
        max_length=100,
        validators=[single_line_validator],
        help_text="Where the token is used, e.g. “Warehouse loader”.",
    )
    kind = forms.ChoiceField(
        choices=[
            (PERSONAL, "Personal: acts as you, with your permissions"),
            (ORGANIZATION, "Organization: a script or pipeline of the whole organization, with the scopes below"),
        ],
        initial=PERSONAL,
        widget=forms.RadioSelect,
    )
    scopes = forms.MultipleChoiceField(
        choices=Scope.choices,
        initial=[Scope.MEASUREMENTS_WRITE],
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="What an organization token may do; give each script only what it needs. "
        "A personal token has no scopes: it acts as you.",
    )

    def __init__(self, *args, membership: Membership, **kwargs):
        super().__init__(*args, **kwargs)
        if not membership.is_admin:  # only admins hold organization tokens
            self.fields["kind"].choices = self.fields["kind"].choices[:1]
            del self.fields["scopes"]

    def clean(self):
        data = super().clean()
        if data.get("kind") == self.ORGANIZATION and not data.get("scopes"):
            self.add_error("scopes", "Choose at least one scope for an organization token.")
        return data
