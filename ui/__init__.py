"""Qt side of Meridian Terminal: windows, widgets, models. Talks to `app/` through the runtime and the bus."""
