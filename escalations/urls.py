from django.urls import path

from escalations import views

# Mounted under /o/<org_slug>/ by config.urls.
urlpatterns = [
    path("workstreams/<int:workstream_id>/", views.workstream_detail, name="workstream_detail"),
]
