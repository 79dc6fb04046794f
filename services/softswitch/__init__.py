"""The softswitch simulator and trace replayer: PSTN callers, agent phones and desktops, and
callback customers, driven by a ``hotline-trace/1`` file against the rest of the suite."""
