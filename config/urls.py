from django.conf import settings
from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path

from config.api import api, not_found
from config.operations import readiness, web
from escalations.collaboration import views as collaboration_views
from governance.identity.forms import SsoAwarePasswordResetForm
from governance.identity.views import EmailFirstLoginView
from governance.security import ThrottledPasswordResetView

urlpatterns = [
    path("login/", EmailFirstLoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path(
        "password-reset/",
        ThrottledPasswordResetView.as_view(form_class=SsoAwarePasswordResetForm),
        name="password_reset",
    ),
    path("password-reset/sent/", auth_views.PasswordResetDoneView.as_view(), name="password_reset_done"),
    path(
        "password-reset/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path("password-reset/done/", auth_views.PasswordResetCompleteView.as_view(), name="password_reset_complete"),
    path("readyz", readiness.readyz, name="readyz"),
    path("metrics", web.metrics, name="metrics"),
    path("slack/", include("escalations.slack.public_urls")),
    path("api/v1/", api.urls),
    # Any character, a newline included (<path:> stops at one): every unknown address answers in the API's shape.
    re_path(r"^api/v1/(?P<rest>[\s\S]*)\Z", not_found),
    path("", include("governance.identity.urls")),
    path("", include("governance.urls")),
    path("o/<slug:org_slug>/", include("scorecards.urls")),
    path("o/<slug:org_slug>/", include("dependencies.urls")),
    path("o/<slug:org_slug>/", include("escalations.urls")),
    path("o/<slug:org_slug>/", include("escalations.collaboration.urls")),
    # Read-only share links: the token in the path is the only credential (collaboration.sharing).
    path("share/<str:token>/", collaboration_views.share, name="share"),
    path("share/<str:token>/tv/", collaboration_views.share, {"tv": True}, name="share_tv"),
]

if "demo" in settings.INSTALLED_APPS:  # development only: the mailbox of the embedded default (demo/mailbox.py)
    urlpatterns.append(path("dev/mail/", include("demo.urls")))
