"""Schedules: fleet tasks fired by cron or interval, and the runner that fires them."""
