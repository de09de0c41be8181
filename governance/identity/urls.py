from django.urls import path

from governance.identity import views

app_name = "identity"

urlpatterns = [
    path("sso/start/", views.sso_start, name="start"),
    path("sso/callback/", views.sso_callback, name="callback"),
    path("o/<slug:org_slug>/single-sign-on/", views.sso_settings, name="sso_settings"),
]
