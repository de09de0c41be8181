from django.urls import include, path

from governance import views

# Under /o/<org_slug>/: TenantMiddleware turns the slug into request.org.
org_urlpatterns = [
    path("settings/", views.organization_settings, name="organization_settings"),
    path("teams/", views.team_list, name="team_list"),
    path("teams/<int:team_id>/", views.team_detail, name="team_detail"),
    path("members/", views.member_list, name="member_list"),
    path("members/<int:membership_id>/role/", views.member_role, name="member_role"),
    path("members/<int:membership_id>/deactivate/", views.member_deactivate, name="member_deactivate"),
    path("members/<int:membership_id>/reactivate/", views.member_reactivate, name="member_reactivate"),
    path("invitations/<int:invitation_id>/revoke/", views.invitation_revoke, name="invitation_revoke"),
    path("invitations/<int:invitation_id>/resend/", views.invitation_resend, name="invitation_resend"),
    path("audit/", views.audit_list, name="audit_list"),
    path("secrets/", views.secret_list, name="secrets"),
    path("secrets/<str:name>/delete/", views.secret_delete, name="secret_delete"),
    path("api-tokens/", views.api_tokens, name="api_tokens"),
    path("api-tokens/<int:token_id>/revoke/", views.api_token_revoke, name="api_token_revoke"),
]

app_name = "governance"
urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("organizations/new/", views.organization_create, name="organization_create"),
    path("invitations/join/", views.invitation_join, name="invitation_join"),
    path("invitations/<str:token>/", views.invitation_accept, name="invitation_accept"),  # the emailed link
    path("o/<slug:org_slug>/", include(org_urlpatterns)),
]
