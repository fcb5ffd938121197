"""The decision engine: (state, event, now) -> (state', outputs).

No Kafka, no Faust, no wall clock: the worker, the offline replay and the
tests all call `Engine.process` the same way, so the same input always gives
the same decision. The state passed in is updated in place; `state.changed`
names the tables to write back.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec

from nudge.policy import content, engagement, identity, personas, rules, updates
from nudge.policy.clock import DAY, HOUR, WEEK
from nudge.policy.config import Catalog, CatalogAction, ContactPolicy
from nudge.policy.cycles import CycleModel, purchase_window
from nudge.policy.experiments import NO_EXPERIMENTS, Experiments
from nudge.policy.ids import decision_id, hash64, in_holdout, unit_draw
from nudge.policy.scoring import HeuristicScorer, Scorer, ScoringRequest
from nudge.policy.state import (
    MAX_CONTACTS,
    MAX_HOLDS,
    MAX_MARKETING_HOLDS,
    MAX_TRANSACTIONAL,
    TABLES,
    Contact,
    CustomerState,
    Enrolment,
    Hold,
    remember,
    seen,
)
from nudge.schemas.events import (
    ClickEvent,
    ConsentEvent,
    ErasureEvent,
    Event,
    FeedbackEvent,
    IdentityEvent,
    PreferencesEvent,
    PurchaseEvent,
)
from nudge.schemas.outputs import (
    Action,
    CandidateVerdict,
    Content,
    Decision,
    ErasureConfirmation,
    ExperimentRef,
    ReasonCode,
    Suppression,
    WouldBeAction,
)

#: Did the action with this decision id reach Kafka, or is it on its way there?
#: The transport answers (streams/produced.py), or a replay; the engine never
#: knows Kafka. Without an answer, a repeated trigger's action is re-issued.
Produced = Callable[[str], bool]

#: The reason a re-issued action gives (Engine._reissue).
REISSUE = (
    "re-issued: this worker has no record that the action reached Kafka (decided before"
    " this worker started, e.g. before a crash or a rebalance, or its send failed);"
    " same decision id, action, channel and timing; its scores were not kept"
)


#: The reason a decided action gives when it must wait (Engine._act).
DEFERRED = "deferred to the end of quiet hours"
WAITED = "held as its trigger asks:"
#: How the reason starts when it waits for the person's best hours instead.
BEST_HOUR = "held to the person's best hours"
#: The reasons a channel is refused only for the contacts already made or reserved.
CAP_REASONS = frozenset({"channel_cap", "global_cap"})
#: How much more a candidate must be worth (catalog `value`) to take a held
#: action's contact: clearly worthier, so near-equal actions never displace
#: each other.
PREEMPT_MARGIN = 1.5


@dataclass(slots=True)
class Outcome:
    """What processing one event produced."""

    decision: Decision | None = None
    # Held actions that were due, released or withdrawn before this event
    # (Engine.release_due), earliest first; published before `decision`.
    released: list[Decision] = field(default_factory=list)
    held: Action | None = None  # the decision, kept in state until it is due: not published
    records: list[msgspec.Struct] = field(default_factory=list)  # consent log, erasure
    duplicate: bool = False
    erase: bool = False  # delete every table entry of this customer
    erased_linked: list[str] = field(default_factory=list)  # ids to erase with them
    transfer_to: str | None = None  # move this (anonymous) state to that customer
    forward_to: str | None = None  # a logged-in visitor's event: the customer's now
    dropped: str | None = None  # not applied at all (`erased`: from before an erasure)
    trace: list[CandidateTrace] = field(default_factory=list)
    # Every (action, channel) pair that passed every rule, with the chance the
    # policy picks it (Engine.choices): what off-policy evaluation needs.
    # Empty when nothing was eligible: a suppression is then certain.
    choices: list[Choice] = field(default_factory=list)


@dataclass(slots=True)
class CandidateTrace:
    """How one candidate fared: for suppressions and for explanations."""

    action: CatalogAction
    category: str | None
    reasons: list[ReasonCode]
    channel_reasons: dict[str, list[ReasonCode]]
    send_times: dict[str, float]  # usable channel -> when it may be sent
    wait: float = 0.0  # seconds its trigger asks to wait before sending (send_after_minutes)
    channel: str | None = None
    channel_why: str = ""
    propensity: float = 0.0
    uplift: float | None = None  # with an uplift model, what `score` is based on
    score: float = 0.0

    @property
    def viable(self) -> bool:
        return not self.reasons and bool(self.send_times)


@dataclass(slots=True, frozen=True)
class Choice:
    """One (action, channel) pair that passed every rule, and the chance the
    policy picks it."""

    candidate: CandidateTrace
    channel: str
    probability: float
    greedy: bool  # the highest score on its chosen channel


class Engine:
    """Applies events to state and decides, with a catalog, a policy and a scorer."""

    def __init__(
        self,
        catalog: Catalog,
        policy: ContactPolicy,
        scorer: Scorer | None = None,
        experiments: Experiments = NO_EXPERIMENTS,
    ) -> None:
        self.catalog = catalog
        self.policy = policy
        self.scorer: Scorer = scorer or HeuristicScorer()
        # Experiments (policy/experiments.py): one engine per arm, with the
        # arm's catalog and policy; `experiment` names the arm an engine runs.
        self.experiments = experiments
        self.experiment: ExperimentRef | None = None
        self._variants: dict[tuple[str, str], Engine] = {}
        for arm in experiments.arms:
            variant = Engine(arm.catalog, arm.policy, self.scorer)
            variant.experiment = ExperimentRef(name=arm.experiment, arm=arm.name)
            self._variants[(arm.experiment, arm.name)] = variant
        self._by_trigger: dict[str, list[CatalogAction]] = {}
        self._by_id = {action.id: action for action in catalog.actions}
        for action in catalog.actions:
            for trigger_event in {t.event for t in action.triggers}:
                self._by_trigger.setdefault(trigger_event, []).append(action)

    def process(
        self,
        state: CustomerState,
        event: Event,
        now: datetime,
        subject_id: str,
        *,
        explain: bool = False,
        channels: frozenset[str] | None = None,
        produced: Produced | None = None,
        release_as_of_due: bool = False,
    ) -> Outcome:
        """Update `state` with `event` and decide if the event is a trigger.

        With `explain`, every channel of every candidate is checked, even of
        candidates already ruled out as a whole (the hot path skips those).
        `channels` restricts the decision to those channels (on-site content
        asks for `web` only); actions offering none of them are no candidates.
        A repeated event (its id, or a purchase's order id, seen before) is a
        duplicate: it changes nothing, and its action is re-issued only if
        `produced` does not know it reached Kafka (Engine._reissue).
        `release_as_of_due`: see release_due."""
        variant = self._variant(state, subject_id)
        if variant is not self:  # the person's experiment arm decides, with its config
            return variant.process(
                state, event, now, subject_id, explain=explain, channels=channels,
                produced=produced, release_as_of_due=release_as_of_due,
            )  # fmt: skip
        if event.ts.timestamp() <= state.profile.erased_at:
            return Outcome(dropped="erased")  # from before an erasure: never stored
        forward_to = state.profile.alias_of
        if forward_to and not isinstance(event, (IdentityEvent, ErasureEvent)):
            return Outcome(forward_to=forward_to)  # this visitor logged in: theirs now
        event_hash = hash64(event.event_id)
        if seen(state.profile, event_hash) or (
            isinstance(event, PurchaseEvent) and updates.known_order(state, event)
        ):
            decision = self._reissue(state, event, now, subject_id, produced)
            return Outcome(duplicate=True, decision=decision)
        if isinstance(event, ErasureEvent):
            return self._erase(state, event, now, subject_id)
        outcome = Outcome(released=self.release_due(state, now, subject_id, release_as_of_due))
        self._remember(state, event_hash)
        self._apply(state, event, now, subject_id, outcome)
        self._assign_persona(state, event, now)
        if isinstance(event, IdentityEvent):
            outcome.transfer_to = event.customer_id
            return outcome
        if event.customer_id is not None and not state.profile.identified:
            state.profile.identified = True
        if self._triggers(event):
            self.decide(state, event, now, subject_id, outcome, explain, channels)
        return outcome

    def merge(self, target: CustomerState, source: CustomerState, event: IdentityEvent) -> bool:
        """The customer's side of identify/alias: fold in the visitor's state.
        Returns False (and changes nothing) if this transfer was merged before."""
        merge_hash = hash64(f"merge\x1f{event.event_id}")
        if seen(target.profile, merge_hash):
            return False
        self._remember(target, merge_hash)
        updates.merge_states(target, source)
        target.fatigue.contacts = target.fatigue.contacts[-MAX_CONTACTS:]
        if source.holds.pending:  # the visitor's held actions now wait for the customer
            merged = sorted([*target.holds.pending, *source.holds.pending], key=_due)
            target.holds.pending = merged[:MAX_HOLDS]
            target.touch("holds")
        updates.apply_identity(target, event)
        identity.link(target.profile, source.profile, event.anonymous_id)
        return True

    def _assign_arm(self, state: CustomerState, subject: str) -> bool:
        """In the holdout? Fixed at the person's first decision and kept in
        state, so a login (which merges a visitor's arm) never flips it."""
        profile = state.profile
        if profile.arm is None:
            profile.arm = "holdout" if self._holdout(state, subject) else "treatment"
            state.touch("profile")
        return profile.arm == "holdout"

    def _variant(self, state: CustomerState, subject: str | None) -> Engine:
        """The engine of the person's experiment arm: the one stored at their
        first decision (kept across a login) while the experiment runs, else
        the one their id draws (none drawn without `subject`); this engine if
        they are in no experiment."""
        if not self._variants:
            return self
        stored = state.profile.experiment
        if stored is not None and (stored.experiment, stored.arm) in self._variants:
            return self._variants[(stored.experiment, stored.arm)]
        drawn = self.experiments.assign(subject) if subject is not None else None
        return self._variants[drawn] if drawn is not None else self

    def _enrol(self, state: CustomerState) -> None:
        """Store the arm deciding now, so later decisions (and a login) keep it."""
        ref = self.experiment
        enrolment = None if ref is None else Enrolment(ref.name, ref.arm)
        if state.profile.experiment != enrolment:
            state.profile.experiment = enrolment
            state.touch("profile")

    def _holdout(self, state: CustomerState | None, subject: str) -> bool:
        if state is not None and state.profile.arm is not None:
            return state.profile.arm == "holdout"
        return in_holdout(subject, self.policy.holdout.share, self.policy.holdout.salt)

    def record_impression(
        self, state: CustomerState, action_id: str, channel: str, at: datetime, did: str
    ) -> bool:
        """Record on-site content shown outside the stream (policy.onsite) as a
        contact, once per decision id. False (nothing changed) for a repeat or
        an action the catalog no longer has."""
        variant = self._variant(state, None)  # it was decided in the stored arm
        if variant is not self:
            return variant.record_impression(state, action_id, channel, at, did)
        action = next((a for a in self.catalog.actions if a.id == action_id), None)
        impression_hash = hash64(f"impression\x1f{did}")
        if action is None or seen(state.profile, impression_hash):
            return False
        self._remember(state, impression_hash)
        ts = at.timestamp()
        self._record_contact(state, action, channel, ts, did, ts)
        return True

    def _triggers(self, event: Event) -> bool:
        return getattr(event, "type", None) in self._by_trigger

    def _remember(self, state: CustomerState, event_hash: int) -> None:
        remember(state.profile, event_hash)
        state.touch("profile")

    def _apply(
        self, state: CustomerState, event: Event, now: datetime, subject: str, outcome: Outcome
    ) -> None:
        if isinstance(event, ClickEvent):
            updates.apply_click(state, event)
        elif isinstance(event, PurchaseEvent):
            updates.apply_purchase(state, event)
        elif isinstance(event, ConsentEvent):
            outcome.records.append(updates.apply_consent(state, subject, event, now))
        elif isinstance(event, PreferencesEvent):
            updates.apply_preferences(state, event)
        elif isinstance(event, FeedbackEvent):
            outcome.records.extend(updates.apply_feedback(state, subject, event, self.policy, now))

    def _assign_persona(self, state: CustomerState, event: Event, now: datetime) -> None:
        """The person's persona, from their behaviour as it changes, with the
        served persona model; none without one, or once profiling is revoked."""
        if not isinstance(event, (ClickEvent, PurchaseEvent, FeedbackEvent, ConsentEvent)):
            return
        assign = getattr(self.scorer, "persona", None)
        persona = None
        if assign is not None and updates.profiling_allowed(state):
            persona = assign(state, now.timestamp())
        if persona != state.profile.persona:
            state.profile.persona = persona
            state.touch("profile")

    def _erase(
        self, state: CustomerState, event: ErasureEvent, now: datetime, subject: str
    ) -> Outcome:
        # Held actions go with the state; each withdrawal is said, with the
        # id every output carries and nothing else about the person.
        withdrawn = [self._withdraw(h, ["erased"], now, subject) for h in state.holds.pending]
        linked = list(state.profile.linked_ids)
        erased_at = max(state.profile.erased_at, event.ts.timestamp())
        for table in TABLES:
            setattr(state, table, type(getattr(state, table))())
        # All that is left is when: older events must not bring them back. The
        # worker keeps it as a marker under a keyed hash (policy/erasure.py).
        state.profile.erased_at = erased_at
        state.changed.clear()
        confirmation = ErasureConfirmation(
            customer_id=subject,
            request_event_id=event.event_id,
            tables_cleared=list(TABLES),
            erased_at=now,
        )
        return Outcome(records=[confirmation], erase=True, erased_linked=linked, released=withdrawn)

    # -- the decision ---------------------------------------------------------

    def decide(
        self,
        state: CustomerState,
        event: Event,
        now: datetime,
        subject: str,
        outcome: Outcome,
        explain: bool = False,
        channels: frozenset[str] | None = None,
    ) -> None:
        """Steps 3-6: candidates, rule-outs, scoring, arbitration, channel, timing."""
        ctx = self._context(state, event, now, subject)
        self._enrol(state)
        candidates = self._candidates(ctx, explain, channels)
        if not candidates:
            return
        preempted = self._preempt(candidates, ctx, outcome, now, channels)
        if preempted:  # decided again on the caps the withdrawn holds gave back
            ctx = self._context(state, event, now, subject)
            candidates = self._candidates(ctx, explain, channels)
        outcome.trace = candidates
        viable = [c for c in candidates if c.viable]
        held_out = [c for c in candidates if c.reasons == ["holdout"] and c.send_times]
        self._score(viable + held_out, ctx)
        if viable:
            outcome.choices = self.choices(viable, state.profile.preferred_channel)
            pick, explored = self._arbitrate(outcome.choices, event.event_id)
            winner = self._on_channel(pick, ctx)
            action = self._act(winner, pick.probability, explored, len(viable), ctx, now)
            if preempted:
                action.reasons.insert(2, f"in place of held {', '.join(preempted)}")
            if action.send_after is None:
                outcome.decision = action
            else:  # it must wait: kept in state until due, not published
                self._hold(state, action, winner.uplift)
                outcome.held = action
        else:
            would_be = max(held_out, key=lambda c: c.score) if held_out else None
            outcome.decision = self._suppress(candidates, would_be, ctx, now)

    def _context(
        self, state: CustomerState, event: Event, now: datetime, subject: str
    ) -> rules.DecisionContext:
        return rules.DecisionContext(
            customer_id=subject,
            event=event,
            event_category=_event_category(event),
            now=now.timestamp(),
            state=state,
            policy=self.policy,
            in_holdout=self._assign_arm(state, subject),
            cycles=self.cycles,
        )

    def _candidates(
        self, ctx: rules.DecisionContext, explain: bool, channels: frozenset[str] | None
    ) -> list[CandidateTrace]:
        """Step 3-4: the event's candidate actions, each with what rules it out."""
        return [
            self._evaluate(action, ctx, explain, channels, wait)
            for action in self._by_trigger.get(getattr(ctx.event, "type", ""), ())
            if (channels is None or not channels.isdisjoint(action.channels))
            and (wait := _trigger_wait(action, ctx)) is not None
        ]

    def _preempt(
        self,
        candidates: list[CandidateTrace],
        ctx: rules.DecisionContext,
        outcome: Outcome,
        now: datetime,
        channels: frozenset[str] | None,
    ) -> list[str]:
        """Withdraw held marketing actions (least valuable first, as few as
        will do) whose reserved contacts alone cap a candidate worth
        PREEMPT_MARGIN times as much as each of them (catalog `value`, so a
        marketer can tell in advance, and a replay with another scorer
        withdraws the same): a cart reminder is not lost to the inspiration
        email held for the same hour. Returns the withdrawn action ids;
        their suppressions go out with this event's releases."""
        capped = [
            c
            for c in candidates
            if not c.reasons
            and not c.send_times
            and any(set(why) <= CAP_REASONS for why in c.channel_reasons.values())
        ]
        state = ctx.state
        held = sorted(
            (h for h in state.holds.pending if self._held_marketing(h)), key=self._held_value
        )
        if not capped or not held:
            return []
        for n in range(1, len(held) + 1):
            freed = held[:n]
            reserved = {decision_id(h.trigger_event_id, h.action_id)[:16] for h in freed}
            trial = self._context(state, ctx.event, now, ctx.customer_id)
            trial.recent = [
                (c.at, c.channel)
                for c in state.fatigue.contacts
                if c.at > trial.now - WEEK and c.decision_id not in reserved
            ]
            worth = [
                c.action.value
                for c in capped
                if self._evaluate(c.action, trial, False, channels, c.wait).viable
            ]
            if not worth:
                continue
            if max(worth) < PREEMPT_MARGIN * self._held_value(freed[-1]):
                return []  # freeing more would only free worthier holds
            for hold in freed:
                withdrawn = self._withdraw(hold, ["preempted"], now, ctx.customer_id, state)
                outcome.released.append(withdrawn)
            state.holds.pending = [h for h in state.holds.pending if h not in freed]
            state.touch("holds")
            return [h.action_id for h in freed]
        return []

    def _held_marketing(self, hold: Hold) -> bool:
        action = self._by_id.get(hold.action_id)
        return action is not None and action.message_class == "marketing"

    def _held_value(self, hold: Hold) -> float:
        return self._by_id[hold.action_id].value

    def _evaluate(
        self,
        action: CatalogAction,
        ctx: rules.DecisionContext,
        explain: bool,
        channels: frozenset[str] | None = None,
        wait: float = 0.0,
    ) -> CandidateTrace:
        trace = CandidateTrace(
            action=action,
            category=rules.resolve_category(action, ctx),
            reasons=rules.action_reasons(action, ctx),
            channel_reasons={},
            send_times={},
            wait=wait,
        )
        # Channels matter only for a candidate that may still win, or whose
        # would-be decision is logged for the holdout.
        if not (explain or _only_holdout(trace.reasons)):
            return trace
        expires = ctx.event.ts.timestamp() + action.expiry_hours * HOUR
        for channel in action.channels:
            if channels is not None and channel not in channels:
                continue
            reasons: list[ReasonCode] = []
            why = rules.consent_reason(action, channel, ctx.state)
            if why:
                reasons.append(why)
            elif not rules.reachable(channel, ctx.state, self.policy):
                reasons.append("no_channel")  # allowed, but no address or device known
            at = rules.send_time(channel, ctx, wait)
            held = len(ctx.state.holds.pending)
            # Deferred past the expiry a marketing message is pointless, and
            # with MAX_MARKETING_HOLDS held it has nowhere to wait; a
            # transactional one is deferred, never dropped: beyond MAX_HOLDS
            # held it goes out at once.
            if at > ctx.now and action.message_class == "marketing":
                if at >= expires or held >= MAX_MARKETING_HOLDS:
                    reasons.append("quiet_hours")
            elif at > ctx.now and held >= MAX_HOLDS:
                at = ctx.now
            if (
                not reasons
                and action.message_class == "marketing"
                and channel not in self.policy.quiet_hours.silent_channels
                and held < MAX_MARKETING_HOLDS
            ):  # held to the person's best hours, if that is allowed and not capped
                better = rules.best_hour(ctx, at, expires)
                if better is not None and not rules.cap_reason(action, channel, better[0], ctx):
                    at = better[0]
            capped = rules.cap_reason(action, channel, at, ctx)
            if capped:
                reasons.append(capped)
            if reasons:
                trace.channel_reasons[channel] = reasons
            else:
                trace.send_times[channel] = at
        if trace.send_times:
            trace.channel, trace.channel_why = self._pick_channel(trace, ctx)
        return trace

    def _pick_channel(self, trace: CandidateTrace, ctx: rules.DecisionContext) -> tuple[str, str]:
        """The person's preferred channel if usable; else one that can be used
        now over one that must wait; then best engagement, then policy order."""
        preferred = ctx.state.profile.preferred_channel
        if preferred in trace.send_times:
            return preferred, "preferred channel"
        order = self.policy.channel_order
        learning = self.policy.engagement

        def rank(channel: str) -> tuple[bool, float, int]:
            # Waiting out quiet hours counts against a channel; waiting for
            # the person's best hour does not (it is the same on every channel).
            deferred = min(trace.send_times[channel], rules.send_time(channel, ctx)) > ctx.now
            position = order.index(channel) if channel in order else len(order)
            return (deferred, -engagement.channel_rate(ctx.state, channel, learning), position)

        best = min(trace.send_times, key=rank)
        rate = engagement.channel_rate(ctx.state, best, learning)
        return best, f"best engagement ({rate:.2f})"

    def _score(self, candidates: list[CandidateTrace], ctx: rules.DecisionContext) -> None:
        """One batched scorer call for all candidates on their chosen channel."""
        if not candidates:
            return
        requests = [
            ScoringRequest(ctx.state, ctx.event, c.action, c.category, c.channel or "", ctx.now)
            for c in candidates
        ]
        # With an uplift model, rank on the expected incremental value of the
        # message (uplift x value x lever), not on who would respond anyway.
        both = getattr(self.scorer, "propensities_and_uplifts", None)
        if both is None:
            propensities, uplifts = self.scorer.propensities(requests), None
        else:
            propensities, uplifts = both(requests)
        for i, candidate in enumerate(candidates):
            candidate.propensity = propensities[i]
            candidate.uplift = None if uplifts is None else uplifts[i]
            basis = candidate.propensity if candidate.uplift is None else candidate.uplift
            lever, _ = personas.lever(candidate.action, ctx.state.profile.persona)
            candidate.score = basis * candidate.action.value * lever

    def choices(self, viable: list[CandidateTrace], preferred: str | None) -> list[Choice]:
        """Every (action, channel) pair of the viable candidates, with the
        chance this policy picks it; the chances sum to 1. The highest score
        on its chosen channel wins, except for an epsilon share of decisions
        that pick uniformly among all pairs. Only pairs that passed every rule
        are here, so exploring never breaks one; where the person's preferred
        channel is usable it is a candidate's only channel (a stated preference
        is honoured, exploring or not); and a transactional message is never
        explored, neither away nor onto another channel."""
        best = min(viable, key=lambda c: (-c.score, c.action.id))
        if best.action.message_class == "transactional":
            # A receipt is owed, on its best channel: never explored away.
            return [Choice(best, best.channel or "", 1.0, True)]

        def channels(c: CandidateTrace) -> list[str]:
            if preferred in c.send_times:
                return [preferred]
            if c.action.message_class == "transactional":
                return [c.channel or ""]
            return list(c.send_times)

        pairs = sorted(
            ((c, channel) for c in viable for channel in channels(c)),
            key=lambda pair: (pair[0].action.id, pair[1]),
        )
        n = len(pairs)
        epsilon = self.policy.exploration.epsilon if n > 1 else 0.0
        return [
            Choice(c, channel, epsilon / n + (1 - epsilon) * greedy, greedy)
            for c, channel in pairs
            for greedy in [c is best and channel == best.channel]
        ]

    def _arbitrate(self, choices: list[Choice], event_id: str) -> tuple[Choice, bool]:
        """The greedy pair, or for an epsilon share of decisions a uniform
        pick among all pairs; whether the pick is not the greedy one. Draws
        are hashed from the event id, so a replay picks the same."""
        greedy = next(choice for choice in choices if choice.greedy)
        n = len(choices)
        epsilon = self.policy.exploration.epsilon if n > 1 else 0.0
        if unit_draw(event_id, "explore") < epsilon:
            pick = choices[int(unit_draw(event_id, "pick") * n)]
            return pick, pick is not greedy
        return greedy, False

    def _on_channel(self, pick: Choice, ctx: rules.DecisionContext) -> CandidateTrace:
        """The picked candidate on the picked channel, scored there if
        exploration moved it off the channel it was scored on."""
        candidate = pick.candidate
        if pick.channel == candidate.channel:
            return candidate
        moved = dataclasses.replace(candidate, channel=pick.channel, channel_why="explored")
        self._score([moved], ctx)
        return moved

    def _act(
        self,
        winner: CandidateTrace,
        probability: float,
        explored: bool,
        n_viable: int,
        ctx: rules.DecisionContext,
        now: datetime,
    ) -> Action:
        action, channel = winner.action, winner.channel or ""
        at = winner.send_times[channel]
        did = decision_id(ctx.event.event_id, action.id)
        self._record_contact(ctx.state, action, channel, at, did, ctx.now)
        persona = ctx.state.profile.persona
        lever, trait = personas.lever(action, persona)
        why = [
            _score_line(winner.score, winner.propensity, action, winner.uplift, lever),
            "explored" if explored else f"highest score of {n_viable} eligible",
            f"channel {channel}: {winner.channel_why}",
        ]
        if persona is not None:
            why.append(f"persona {persona}" + (f": lever {lever:g} for {trait}" if trait else ""))
        cycle = self._cycle_line(action, winner.category, ctx.state, ctx.now)
        if cycle:
            why.append(cycle)
        earliest = rules.earliest_send(ctx, winner.wait)
        if earliest > ctx.now:
            why.append(f"{WAITED} {winner.wait / 60:g} min after the {ctx.event.type}")
        if at > rules.send_time(channel, ctx, winner.wait):
            why.append(_best_hour_line(ctx, at))
        elif at > earliest:
            why.append(DEFERRED)
        expires = ctx.event.ts.timestamp() + action.expiry_hours * HOUR
        if at >= expires:  # a transactional message deferred past its expiry
            expires = at + action.expiry_hours * HOUR
        shown = self._content(action, winner.category, channel, ctx.state, ctx.now)
        return Action(
            **self._header(did, ctx, now),
            action_id=action.id,
            channel=channel,  # type: ignore[arg-type]
            message_class=action.message_class,
            category=winner.category,
            score=round(winner.score, 6),
            propensity=round(winner.propensity, 6),
            selection_probability=round(probability, 6),
            explored=explored,
            reasons=[*why, f"shows {_content_line(shown)}"] if shown else why,
            send_after=_utc(at) if at > ctx.now else None,
            expires_at=_utc(expires),
            content=shown,
            persona=persona,
        )

    @property
    def cycles(self) -> CycleModel | None:
        """The served model's learned purchase cycles, if it has them; None:
        the policy's fixed cooldowns and replenishment days apply."""
        return getattr(self.scorer, "cycles", None)

    def _content(
        self,
        action: CatalogAction,
        category: str | None,
        channel: str,
        state: CustomerState,
        now: float,
    ) -> Content | None:
        """What the action shows (policy/content.py)."""
        return content.choose(action, category, channel, state, self.policy, self.cycles, now)

    def _cycle_line(
        self, action: CatalogAction, category: str | None, state: CustomerState, now: float
    ) -> str | None:
        """For a marketing action whose category the person bought: where its
        purchase cycle stands (learned or fixed), so the action says why now."""
        if action.message_class != "marketing" or category is None:
            return None
        profiled = updates.profiling_allowed(state)
        window = purchase_window(state, self.policy, self.cycles, category, profiled)
        if window is None:
            return None
        due = window.due_at is not None and now >= window.due_at
        return f"{'next need due' if due else 'cooldown over'}: {window.explain()}"

    def _record_contact(
        self,
        state: CustomerState,
        action: CatalogAction,
        channel: str,
        at: float,
        did: str,
        now: float,
    ) -> None:
        """Remember the contact at its delivery time `at`; prune against the
        decision time `now`, since a deferred `at` would forget contacts that
        windows and cooldowns seen from `now` still need."""
        fatigue = state.fatigue
        fatigue.last_action[action.id] = at
        deferred_s = math.ceil(at - now) if at > now else 0
        contact = Contact(at, channel, action.id, did[:16], deferred_s=deferred_s)
        if action.message_class == "marketing":
            contacts = fatigue.contacts
            contacts.append(contact)
            contacts.sort(key=lambda c: c.at)
            fatigue.contacts = rules.prune_contacts(contacts, now, MAX_CONTACTS)
        else:
            fatigue.transactional = [*fatigue.transactional, contact][-MAX_TRANSACTIONAL:]
        horizon = max((a.cooldown_hours for a in self.catalog.actions), default=0) * HOUR
        for action_id in [a for a, t in fatigue.last_action.items() if t < now - horizon]:
            del fatigue.last_action[action_id]
        if at <= now:  # a held message counts as sent once it is (Engine._release)
            updates.record_contact_stats(state, channel)
        state.touch("fatigue")

    # -- held actions (docs/channels.md) ----------------------------------------

    def _hold(self, state: CustomerState, action: Action, uplift: float | None = None) -> None:
        """Keep an action that must wait in state until its `send_after`; its
        contact is already reserved at that time (_record_contact). The
        uplift, if one scored it, lets the released action say so."""
        assert action.send_after is not None
        hold = Hold(
            due=action.send_after.timestamp(),
            trigger_event_id=action.trigger_event_id,
            trigger_type=action.trigger_type,
            trigger_ts=action.trigger_ts.timestamp(),
            decided_at=action.decided_at.timestamp(),
            action_id=action.action_id,
            channel=action.channel,
            category=action.category,
            score=action.score,
            propensity=action.propensity,
            selection_probability=action.selection_probability,
            explored=action.explored,
            model_version=action.model_version,
            why=[r for r in action.reasons[1:] if r != DEFERRED],
            uplift=uplift,
            persona=action.persona,
        )
        state.holds.pending = sorted([*state.holds.pending, hold], key=_due)
        state.touch("holds")

    def release_due(
        self, state: CustomerState, now: datetime, subject: str, as_of_due: bool = False
    ) -> list[Decision]:
        """Release the held actions due by `now`, earliest first, each after
        re-running the rules on the person's state now (`as_of_due`: as of
        its due time, as on the event clock, where `now` is the log's time
        and a timer that fell behind a fast log must not judge a hold due at
        08:00 by the time of the person's next event): the action (same
        decision id, deliverable on receipt), or a suppression with the same
        decision id naming what changed, whose contact reservation is given
        back. A hold whose channel is inside quiet hours again (the person
        changed them) waits on. A released hold is gone from state, so it is
        never released twice, however often this is called."""
        variant = self._variant(state, subject)
        if variant is not self:  # held by the arm's engine: its catalog and policy
            return variant.release_due(state, now, subject, as_of_due)
        now_ts = now.timestamp()
        pending = state.holds.pending
        if not pending or pending[0].due > now_ts:
            return []
        decisions: list[Decision] = []
        kept: list[Hold] = []
        for hold in pending:
            if hold.due > now_ts:
                kept.append(hold)
                continue
            at = datetime.fromtimestamp(hold.due, UTC) if as_of_due else now
            released = self._release(state, hold, at, subject)
            if isinstance(released, Hold):
                kept.append(released)
            else:
                decisions.append(released)
        state.holds.pending = sorted(kept, key=_due)
        state.touch("holds")
        return decisions

    def _release(
        self, state: CustomerState, hold: Hold, now: datetime, subject: str
    ) -> Decision | Hold:
        now_ts = now.timestamp()
        did = decision_id(hold.trigger_event_id, hold.action_id)
        action = self._by_id.get(hold.action_id)
        if action is None:
            return self._withdraw(hold, ["withdrawn"], now, subject, state)
        marketing = action.message_class == "marketing"
        # As when deciding (_act): a marketing message expires; a
        # transactional one reaching the person late gets its expiry from then.
        expires = hold.trigger_ts + action.expiry_hours * HOUR
        if now_ts >= expires:
            if marketing:
                return self._withdraw(hold, ["expired"], now, subject, state)
            expires = now_ts + action.expiry_hours * HOUR
        reasons = rules.held_reasons(
            action, hold.channel, hold.category, state, self.policy, now_ts, did[:16], self.cycles
        )
        if reasons:
            return self._withdraw(hold, reasons, now, subject, state)
        quiet = self.policy.quiet_hours
        if hold.channel not in quiet.silent_channels:
            later = rules.quiet_hours_end(rules.quiet_window(state, quiet), now_ts)
            if later > now_ts:
                if marketing and later >= expires:
                    return self._withdraw(hold, ["quiet_hours"], now, subject, state)
                self._settle(state, hold, did, later)
                return msgspec.structs.replace(hold, due=later)
        self._settle(state, hold, did, now_ts)
        updates.record_contact_stats(state, hold.channel)
        waited = "quiet hours"
        if any(w.startswith(BEST_HOUR) for w in hold.why):
            waited = "best hour"
        elif any(w.startswith(WAITED) for w in hold.why):
            waited = "its trigger's wait"
        lever, _ = personas.lever(action, hold.persona)
        held = (
            f"held from {_utc(hold.decided_at):%Y-%m-%d %H:%M} until"
            f" {_utc(hold.due):%Y-%m-%d %H:%M} UTC ({waited}); consent, snooze,"
            " cooldowns, fatigue and caps re-checked when due"
        )
        return Action(
            **self._hold_header(hold, did, now, state, subject),
            action_id=action.id,
            channel=hold.channel,  # type: ignore[arg-type]
            message_class=action.message_class,
            category=hold.category,
            score=hold.score,
            propensity=hold.propensity,
            selection_probability=hold.selection_probability,
            explored=hold.explored,
            reasons=[
                _score_line(hold.score, hold.propensity, action, hold.uplift, lever),
                *hold.why,
                held,
            ],
            send_after=None,
            expires_at=_utc(expires),
            held_at=_utc(hold.decided_at),
            persona=hold.persona,
            content=self._content(action, hold.category, hold.channel, state, now_ts),
        )

    def _withdraw(
        self,
        hold: Hold,
        reasons: list[ReasonCode],
        now: datetime,
        subject: str,
        state: CustomerState | None = None,
    ) -> Suppression:
        """The suppression a held action becomes, with its decision id; its
        contact reservation in `state` is given back."""
        did = decision_id(hold.trigger_event_id, hold.action_id)
        if state is not None:
            self._settle(state, hold, did, None)
        return Suppression(
            **self._hold_header(hold, did, now, state, subject),
            reasons=list(reasons),
            candidates=[CandidateVerdict(action_id=hold.action_id, reasons=list(reasons))],
        )

    def _hold_header(
        self, hold: Hold, did: str, now: datetime, state: CustomerState | None, subject: str
    ) -> dict[str, Any]:
        """The decision header of a held action when it ends (released or withdrawn)."""
        return {
            "decision_id": did,
            "customer_id": subject,
            "trigger_event_id": hold.trigger_event_id,
            "trigger_type": hold.trigger_type,
            "trigger_ts": _utc(hold.trigger_ts),
            "decided_at": now,
            "model_version": hold.model_version,
            "experiment_arm": "holdout" if self._holdout(state, subject) else "treatment",
            "experiment": self.experiment,
        }

    def _settle(self, state: CustomerState, hold: Hold, did: str, at: float | None) -> None:
        """Move a hold's reserved contact to `at`, when it reaches the person
        (also what a re-issue of it repeats), or give it back (None)."""
        fatigue, short = state.fatigue, did[:16]
        for name in ("contacts", "transactional"):
            contacts: list[Contact] = getattr(fatigue, name)
            mine = [c for c in contacts if c.decision_id == short]
            if not mine:
                continue
            kept = [c for c in contacts if c.decision_id != short]
            if at is not None:
                kept.append(msgspec.structs.replace(mine[0], at=at, deferred_s=0))
                kept.sort(key=lambda c: c.at)
            setattr(fatigue, name, kept)
        times = [
            c.at
            for c in (*fatigue.contacts, *fatigue.transactional)
            if c.action_id == hold.action_id
        ]
        if times:
            fatigue.last_action[hold.action_id] = max(times)
        else:
            fatigue.last_action.pop(hold.action_id, None)
        state.touch("fatigue")

    # -- redelivery (docs/reliability.md) --------------------------------------

    def _reissue(
        self,
        state: CustomerState,
        event: Event,
        now: datetime,
        subject: str,
        produced: Produced | None,
    ) -> Decision | None:
        """The action a redelivered trigger already led to, issued again if it
        may not have reached Kafka; None if it did, or there was none.

        An action's state is written before the action is sent, so after a
        crash the state may hold a trigger whose action never reached Kafka.
        Skipping the redelivered trigger would lose that action; issuing it
        again from its contact record (same decision id, action, channel and
        timing) loses nothing, and downstream drops a copy it has by decision
        id. But a trigger resent upstream (10,000 copies of one event) must
        not send 10,000 copies: where `produced` knows the action reached
        Kafka, nothing is issued. If the person has opted out or blocked the
        channel since, the copy is withheld, and a suppression says so."""
        if any(h.trigger_event_id == event.event_id for h in state.holds.pending):
            return None  # held: nothing was published, and the hold is still in state
        actions = {
            decision_id(event.event_id, action.id): action
            for action in self._by_trigger.get(getattr(event, "type", ""), ())
        }
        if not actions:
            return None
        by_short_id = {did[:16]: did for did in actions}
        fatigue = state.fatigue
        for contact in (*fatigue.contacts, *fatigue.transactional):
            did = by_short_id.get(contact.decision_id)
            if did is None:
                continue
            if produced is not None and produced(did):
                return None
            action = actions[did]
            blocked = rules.consent_reason(action, contact.channel, state)
            if blocked is not None:  # a revocation or block processed since binds the copy too
                return self._withheld(state, event, action, blocked, now, subject)
            expires = event.ts.timestamp() + action.expiry_hours * HOUR
            if contact.at >= expires:  # as in _act: a deferred transactional message
                expires = contact.at + action.expiry_hours * HOUR
            holdout = self._holdout(state, subject)
            category = {"$event": _event_category(event), "$cart": state.recency.cart_category}
            category = category.get(action.category or "", action.category)
            return Action(
                decision_id=did,
                customer_id=subject,
                trigger_event_id=event.event_id,
                trigger_type=getattr(event, "type", ""),
                trigger_ts=event.ts,
                decided_at=_utc(contact.at - contact.deferred_s),
                model_version=self.scorer.version,
                experiment_arm="holdout" if holdout else "treatment",
                experiment=self.experiment,
                action_id=action.id,
                channel=contact.channel,  # type: ignore[arg-type]
                message_class=action.message_class,
                category=category,
                score=0.0,
                propensity=0.0,
                selection_probability=1.0,
                explored=False,
                reasons=[REISSUE],
                send_after=_utc(contact.at) if contact.deferred_s else None,
                expires_at=_utc(expires),
                content=self._content(action, category, contact.channel, state, now.timestamp()),
            )
        return None

    def _withheld(
        self,
        state: CustomerState,
        event: Event,
        action: CatalogAction,
        reason: ReasonCode,
        now: datetime,
        subject: str,
    ) -> Suppression:
        """The suppression a re-issue becomes when consent no longer allows it."""
        holdout = self._holdout(state, subject)
        return Suppression(
            decision_id=decision_id(event.event_id, "suppress"),
            customer_id=subject,
            trigger_event_id=event.event_id,
            trigger_type=getattr(event, "type", ""),
            trigger_ts=event.ts,
            decided_at=now,
            model_version=self.scorer.version,
            experiment_arm="holdout" if holdout else "treatment",
            experiment=self.experiment,
            reasons=[reason],
            candidates=[CandidateVerdict(action_id=action.id, reasons=[reason])],
        )

    def _header(self, did: str, ctx: rules.DecisionContext, now: datetime) -> dict[str, Any]:
        """The fields every action and suppression share (DecisionHeader)."""
        return {
            "decision_id": did,
            "customer_id": ctx.customer_id,
            "trigger_event_id": ctx.event.event_id,
            "trigger_type": getattr(ctx.event, "type", ""),
            "trigger_ts": ctx.event.ts,
            "decided_at": now,
            "model_version": self.scorer.version,
            "experiment_arm": "holdout" if ctx.in_holdout else "treatment",
            "experiment": self.experiment,
        }

    def _cooldown_notes(self, candidate: CandidateTrace, ctx: rules.DecisionContext) -> list[str]:
        """Until when a candidate's purchase cooldown runs, learned or fixed."""
        if "purchase_cooldown" not in candidate.reasons or candidate.category is None:
            return []
        profiled = updates.profiling_allowed(ctx.state)
        window = purchase_window(ctx.state, self.policy, self.cycles, candidate.category, profiled)
        return [f"purchase_cooldown: {window.explain()}"] if window is not None else []

    def _suppress(
        self,
        candidates: list[CandidateTrace],
        would_be: CandidateTrace | None,
        ctx: rules.DecisionContext,
        now: datetime,
    ) -> Suppression:
        verdicts = []
        reasons: list[ReasonCode] = []
        for c in candidates:
            mine = list(c.reasons)
            # Channel reasons speak only for candidates not ruled out as a
            # whole: the same on the hot path and in an explanation.
            by_channel = c.channel_reasons if _only_holdout(c.reasons) else {}
            if not c.send_times and _only_holdout(c.reasons):
                for channel_reasons in by_channel.values():
                    mine.extend(r for r in channel_reasons if r not in mine)
                if not by_channel:
                    mine.append("no_channel")
            reasons.extend(r for r in mine if r not in reasons)
            verdicts.append(
                CandidateVerdict(
                    action_id=c.action.id,
                    reasons=mine,
                    channel_reasons=by_channel,
                    notes=self._cooldown_notes(c, ctx),
                )
            )
        return Suppression(
            **self._header(decision_id(ctx.event.event_id, "suppress"), ctx, now),
            reasons=reasons,
            candidates=verdicts,
            would_be=(
                WouldBeAction(
                    action_id=would_be.action.id,
                    channel=would_be.channel,  # type: ignore[arg-type]
                    score=round(would_be.score, 6),
                )
                if would_be
                else None
            ),
        )


def _trigger_wait(action: CatalogAction, ctx: rules.DecisionContext) -> float | None:
    """Seconds to wait before sending, as the first of the action's triggers
    that holds asks (0: at once); None when none holds."""
    for trigger in action.triggers:
        if _trigger_holds(trigger, action, ctx):
            return (trigger.send_after_minutes or 0.0) * 60
    return None


def _trigger_holds(trigger, action: CatalogAction, ctx: rules.DecisionContext) -> bool:
    """Does this trigger's event type match and every condition hold?"""
    event, recency, now = ctx.event, ctx.state.recency, ctx.now
    if getattr(event, "type", None) != trigger.event:
        return False
    if trigger.categories and ctx.event_category not in trigger.categories:
        return False
    if trigger.cart_idle_minutes is not None:
        if recency.cart_items == 0 or not recency.cart_updated_at:
            return False
        if now - recency.cart_updated_at < trigger.cart_idle_minutes * 60:
            return False
    if trigger.min_cart_value is not None and recency.cart_value < trigger.min_cart_value:
        return False
    if trigger.replenish_after_days is not None and not _replenishment_due(trigger, action, ctx):
        return False
    if trigger.min_category_affinity is not None:
        score = recency.affinity.get(ctx.event_category or "", 0.0)
        if score < trigger.min_category_affinity:
            return False
    return True


def _replenishment_due(trigger, action: CatalogAction, ctx: rules.DecisionContext) -> bool:
    """Has the person's next need of the action's category come? With a
    learned cycle at its due time; else `replenish_after_days` after buying."""
    category = rules.resolve_category(action, ctx)
    state = ctx.state
    bought = state.recency.last_purchase.get(category or "")
    if bought is None or category is None:
        return False
    profiled = updates.profiling_allowed(state)
    window = purchase_window(state, ctx.policy, ctx.cycles, category, profiled)
    if window is not None and window.due_at is not None:
        return ctx.now >= window.due_at
    return ctx.now - bought >= trigger.replenish_after_days * DAY


def _content_line(shown: Content) -> str:
    products = f" ({len(shown.products)} products)" if shown.products else ""
    return f"{shown.category or 'no category'}{products}: {shown.reason}"


def _only_holdout(reasons: list[ReasonCode]) -> bool:
    """No reason, or only the holdout: the candidate's channels matter."""
    return all(r == "holdout" for r in reasons)


def _event_category(event: Event) -> str | None:
    if isinstance(event, ClickEvent):
        return event.category
    if isinstance(event, PurchaseEvent):
        return event.items[0].category
    return None


def _score_line(
    score: float,
    propensity: float,
    action: CatalogAction,
    uplift: float | None = None,
    lever: float | None = None,
) -> str:
    lever = action.lever if lever is None else lever
    if uplift is not None:
        return (
            f"score {score:.4g} = uplift {uplift:+.4f} x value {action.value:g}"
            f" x lever {lever:g} (propensity {propensity:.3f})"
        )
    return (
        f"score {score:.4g} = propensity {propensity:.3f}"
        f" x value {action.value:g} x lever {lever:g}"
    )


def _best_hour_line(ctx: rules.DecisionContext, at: float) -> str:
    """Why a marketing message waits for the person's best hours."""
    rates = next((v for v in ctx.best_hours.values() if v is not None and v[0] == at), None)
    local = datetime.fromtimestamp(at, rules.zone_of(ctx.state, ctx.policy))
    if rates is None:  # not expected: every later send time comes from best_hour
        return f"{BEST_HOUR} from {local:%H:%M} local"
    return (
        f"{BEST_HOUR} from {local:%H:%M} local: {rates[1]:.2f} of their messages get a"
        f" response then, {rates[2]:.2f} at once"
    )


def _due(hold: Hold) -> float:
    return hold.due


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)
