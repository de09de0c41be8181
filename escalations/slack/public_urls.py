from django.urls import path

from escalations.slack import interactivity

# Slack's requests, signed with the app's signing secret: one URL per app, whatever the organization.
urlpatterns = [
    path("interactivity/", interactivity.interactivity, name="slack_interactivity"),
    path("commands/", interactivity.command, name="slack_command"),
]
