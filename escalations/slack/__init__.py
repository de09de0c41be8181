"""The Slack app (docs/slack.md): install per organization, member links, direct messages with buttons, and the
decisions taken from them through the same services as the web. The channel module that the delivery sweep calls is
escalations.notify.channels.slack."""
