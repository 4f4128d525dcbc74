"""Dependencies shared by routers, as `Annotated` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from schemas.settings import Settings

__all__ = ["SettingsDep"]


# async although it awaits nothing: FastAPI runs a plain `def` dependency in its thread pool
async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(_settings)]
