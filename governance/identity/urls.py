from django.urls import path

from governance.identity import scim, views

app_name = "identity"

urlpatterns = [
    path("login/verify/", views.login_verify, name="login_verify"),
    path("account/two-factor/", views.two_factor_settings, name="two_factor"),
    path("signup/", views.signup, name="signup"),
    path("signup/verify/<str:token>/", views.signup_verify, name="signup_verify"),
    path("scim/v2/Users", scim.users, name="scim_users"),
    path("scim/v2/Users/<str:object_id>", scim.users, name="scim_user"),
    path("scim/v2/Groups", scim.groups, name="scim_groups"),
    path("scim/v2/Groups/<str:object_id>", scim.groups, name="scim_group"),
    path("sso/start/", views.sso_start, name="start"),
    path("sso/callback/", views.sso_callback, name="callback"),
    path("o/<slug:org_slug>/single-sign-on/", views.sso_settings, name="sso_settings"),
]
