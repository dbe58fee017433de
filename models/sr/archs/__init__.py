"""Network definitions (``nn.Module`` only) for SR models basicsr does not ship.

Import the modules directly (``models.sr.archs.hat_arch``); this package imports nothing so that
listing the SR registry stays cheap.
"""
