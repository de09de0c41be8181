from django.urls import include, path

# Mounted under /o/<org_slug>/ by config.urls; every page of the app is named "escalations:<name>".
app_name = "escalations"

urlpatterns = [
    path("", include("escalations.workstreams.urls")),
    path("", include("escalations.notify.urls")),
    path("", include("escalations.slack.urls")),
    path("", include("escalations.policies.urls")),
    path("", include("escalations.decisions.urls")),
    path("", include("escalations.reporting.urls")),
]
