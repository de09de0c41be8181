from django.urls import path

from escalations.slack import views

# Included by escalations.urls (namespace "escalations"), under /o/<org_slug>/.
urlpatterns = [
    path("settings/slack/", views.slack_settings, name="slack_settings"),
    path("settings/slack/connect/", views.slack_connect, name="slack_connect"),
    path("settings/slack/callback/", views.slack_callback, name="slack_callback"),
    path("settings/slack/disconnect/", views.slack_disconnect, name="slack_disconnect"),
    path("settings/slack/signing-secret/", views.slack_signing_secret, name="slack_signing_secret"),
    path("settings/slack/test/", views.slack_test, name="slack_test"),
    path("me/slack/", views.slack_account, name="slack_account"),
]
