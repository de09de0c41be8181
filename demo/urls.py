from django.urls import path

from demo import mailbox

app_name = "demo"
urlpatterns = [
    path("", mailbox.mailbox, name="mailbox"),
    path("<str:name>/", mailbox.mail_message, name="mail_message"),
    path("<str:name>/html/", mailbox.mail_html, name="mail_html"),
]
