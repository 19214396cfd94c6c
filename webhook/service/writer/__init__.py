"""The write side, run by the Lease holder only: ChaosImageRegistry status, pull-secret copies, Events."""

from webhook.service.writer.loop import Writer

__all__ = ["Writer"]
