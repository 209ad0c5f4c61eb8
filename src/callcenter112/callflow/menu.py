"""The caller's menu and the queue: IVR prompts and digits, queue prompts,
position announcements and overflow (a part of `EmergencyCall`, see callflow/call_base.py).
"""

from __future__ import annotations

from ..incidents import Category
from ..ivr import (
    DigitAccepted,
    DigitRejected,
    InputTimedOut,
    IvrAction,
    IvrFinished,
    IvrMenu,
    PlayPrompts,
    StopPlayback,
)
from ..media.player import Player, PromptFinished
from ..media.prompts import Prompt
from ..rtp.events import DigitReceived
from .call_base import (
    CallBase,
    CallT,
    _ivr_detail,
    _ivr_event_kind,
)
from .inbox import (
    CallerSpeech,
    IvrTimer,
    PromptDone,
)
from .phases import Happening, Phase

__all__ = ["MenuPart"]


class MenuPart(CallBase[CallT]):
    """The caller's menu and the queue: IVR prompts and digits, queue prompts,"""

    # -- 3: IVR ----------------------------------------------------------------------

    async def _start_ivr(self) -> None:
        self.change_phase(Happening.ANSWERED)
        # Issue 12: repeat_caller / watch_listed flags, then speech detection.
        await self.screening.arrive(self.journal, now=self._wall(), incident_id=self.incident_id)
        self.screening.listen(self.caller.media, lambda: self.post(CallerSpeech()))
        self.ivr = IvrMenu(self.centre.ivr_settings)
        await self._run_ivr(self.ivr.start(self._now(), watch_listed=self.screening.listed))

    async def _run_ivr(self, actions: list[IvrAction]) -> None:
        for action in actions:
            if isinstance(action, PlayPrompts):
                player = self._ensure_player()
                prompts = [
                    self.centre.prompts.get(name, action.language, player.codec)
                    for name in action.names
                ]
                seq = player.play(*prompts)
                self._ivr_playbacks[seq] = action.playback
            elif isinstance(action, StopPlayback):
                if self.player is not None:
                    self.player.barge_in()
            elif isinstance(action, DigitAccepted | DigitRejected | InputTimedOut):
                await self.journal.event(_ivr_event_kind(action), _ivr_detail(action))
            elif isinstance(action, IvrFinished):
                await self._ivr_finished(action)
        if self.ivr is not None and self.ivr.deadline is not None and not self.ivr.finished:
            self._arm("ivr", self.ivr.deadline, IvrTimer())
        else:
            self._cancel_timer("ivr")

    def _ensure_player(self) -> Player:
        media = self.caller.media
        assert media is not None
        if self.player is None or self.player.codec is not media.codec:
            self.player = Player(media.codec, on_finished=self._on_player_finished)
        if media.mode != "play" or media.player is not self.player:
            media.play(self.player)
        return self.player

    def _on_player_finished(self, event: PromptFinished) -> None:
        self.post(PromptDone(event.sequence))

    async def _on_digit(self, event: DigitReceived) -> None:
        self.log.info("digit", digit=event.digit, source=event.source)
        if self.ivr is not None and not self.ivr.finished and self.phase is Phase.IVR:
            try:
                actions = self.ivr.digit(event.digit, self._now())
            except Exception as exc:  # noqa: BLE001 - a digit must never break the call
                self.log.warning("ivr_digit_refused", digit=event.digit, error=str(exc))
                return
            await self._run_ivr(actions)
        elif self.phase in (Phase.QUEUE, Phase.TALKING):
            await self.journal.event("digit", {"digit": event.digit, "source": event.source})

    async def _on_prompt_done(self, sequence: int) -> None:
        playback = self._ivr_playbacks.pop(sequence, None)
        if playback is not None and self.ivr is not None and not self.ivr.finished:
            await self._run_ivr(self.ivr.prompt_finished(self._now(), playback))

    async def _on_ivr_timer(self) -> None:
        if self.ivr is not None and not self.ivr.finished:
            await self._run_ivr(self.ivr.timer_fired(self._now()))

    async def _ivr_finished(self, done: IvrFinished) -> None:
        self.category = done.category
        self.language = done.language
        await self.journal.stamp(
            ivr_done_at=self._wall(),
            category=Category(done.category),
            language=done.language,
            event="ivr_done",
            detail={"category": done.category, "reason": done.reason, "digits": done.digits},
        )
        if self.phase is not Phase.IVR:
            return
        self.ivr_outcome = done
        self.change_phase(Happening.IVR_FINISHED)
        urgent, listed = await self.screening.finished(self.journal, done)  # issue 12
        self.centre.desk.enqueue(
            self.ref, self.category, self.arrived_mono, urgent=urgent, watch_listed=listed
        )

    # -- 4: queue ------------------------------------------------------------------------

    async def _on_queued(self, position: int, requeued: bool) -> None:
        self.log.info("queued", category=self.category, position=position, requeued=requeued)
        if self.phase is not Phase.TALKING:
            self.change_phase(Happening.QUEUED)
        if not requeued:
            await self.journal.stamp(
                queued_at=self._wall(), event="queued", detail={"position": position}
            )
        else:
            await self.journal.event("requeued", {"position": position})
        if self.caller.media is None:
            return
        lang = self.language
        player = self._ensure_player()
        codec = player.codec
        prompts = []
        if requeued:
            prompts.append(self.centre.prompts.get("operator_lost", lang, codec))
        elif self.ivr_outcome is not None and self.ivr_outcome.reason == "no_input":
            prompts.append(self.centre.prompts.get("silent", lang, codec))
        if self.centre.desk.operators_free() == 0 and not requeued:
            prompts.append(self.centre.prompts.get("all_busy", lang, codec))
        else:
            prompts.append(self.centre.prompts.get("please_hold", lang, codec))
        prompts += self._position_prompts(position)
        player.play(*prompts)
        player.loop(self.centre.prompts.get("hold_music", lang, codec))

    def _position_prompts(self, position: int) -> list[Prompt]:
        player = self.player
        assert player is not None
        prompts = self.centre.prompts
        try:
            return [
                prompts.get("position", self.language, player.codec),
                prompts.number(position, self.language, player.codec),
            ]
        except Exception:  # noqa: BLE001 - a position beyond the number prompts: skip it
            return []

    def _announce_position(self, position: int) -> None:
        if self.phase is not Phase.QUEUE or self.player is None:
            return
        self.player.play(*self._position_prompts(position))

    async def _on_overflow(self) -> None:
        await self.journal.event("overflow", {"to": self.centre.config.queue.overflow_to})
        handoff = self.centre.handoff
        if handoff is not None:
            await handoff.overflow(self.as_call())
        else:
            # No overflow destination after all: keep the caller, back in the queue.
            self.centre.desk.enqueue(self.ref, self.category, self.arrived_mono, front=True)
