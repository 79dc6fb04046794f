"""The IVR's domain core: menu trees and the session interpreter (plain, synchronous code)."""

from services.ivr_engine.domain.menu import (
    Defaults,
    Menu,
    MenuCatalog,
    MenuError,
    parse_menu,
    parse_menu_yaml,
)
from services.ivr_engine.domain.session import (
    Collect,
    Completed,
    Customer,
    IllegalTransition,
    Interpreter,
    NeedOutages,
    Outage,
    Prompt,
    ReleaseCall,
    SessionState,
    Step,
    SurveyAnswered,
)

__all__ = [
    "Collect",
    "Completed",
    "Customer",
    "Defaults",
    "IllegalTransition",
    "Interpreter",
    "Menu",
    "MenuCatalog",
    "MenuError",
    "NeedOutages",
    "Outage",
    "Prompt",
    "ReleaseCall",
    "SessionState",
    "Step",
    "SurveyAnswered",
    "parse_menu",
    "parse_menu_yaml",
]
