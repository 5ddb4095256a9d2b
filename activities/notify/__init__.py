"""Notifications: one `Channel` interface, its implementations, and the `notify` activity that drives them."""

from activities.notify.activity import NotificationActivities, NotifyProgress, channel_slot, default_channels
from activities.notify.base import Channel, DeliveryError
from activities.notify.cloudevents import CloudEventsChannel
from activities.notify.pagerduty import PagerDutyChannel
from activities.notify.slack import SlackChannel
from activities.notify.smtp import EmailChannel
from activities.notify.status_page import StatusPageChannel
from activities.notify.webhook import WebhookChannel

__all__ = [
    "Channel",
    "CloudEventsChannel",
    "DeliveryError",
    "EmailChannel",
    "NotificationActivities",
    "NotifyProgress",
    "PagerDutyChannel",
    "SlackChannel",
    "StatusPageChannel",
    "WebhookChannel",
    "channel_slot",
    "default_channels",
]
