from django.contrib.auth import get_user_model, login
from django.contrib.auth.models import Group
from django.http import HttpResponse
from django.urls import include, path


def sign_in(request):
    """The provider's own login, reduced to what the tests need: the person (and their groups) signs in here."""
    email = request.GET["email"]
    user, _ = get_user_model().objects.get_or_create(username=email, defaults={"email": email})
    user.first_name = request.GET.get("name", "")
    user.save()
    user.groups.set([Group.objects.get_or_create(name=g)[0] for g in request.GET.getlist("group")])
    login(request, user)
    return HttpResponse("signed in")


urlpatterns = [
    path("sign-in/", sign_in),
    # Browsers ask every origin for one; a 404 would be the only console error of the browser journey.
    path("favicon.ico", lambda request: HttpResponse(status=204)),
    path("", include("oauth2_provider.urls")),
]
