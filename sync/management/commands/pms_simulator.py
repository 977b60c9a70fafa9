from __future__ import annotations

import signal
import time
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.core.management.base import BaseCommand, CommandError, CommandParser

from sync.pms.cliniko.simulator import ClinikoSimulator, FaultKind, FaultPlan
from sync.synthetic import ClinicSpec, ImpossibleClinicError


class Command(BaseCommand):
    help = (
        "Serve a simulated PMS API on loopback until Ctrl-C: a generated clinic behind the "
        "PMS's auth, pagination, filters and rate limit, with optional faults."
    )
    # Serves generated data only: no database, so no checks that would touch one.
    requires_system_checks: list[str] = []
    requires_migrations_checks = False

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("pms", choices=["cliniko"])
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
        parser.add_argument("--patients", type=int, default=2000, help="50 to 50,000")
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--time-zone", default="Australia/Melbourne")
        parser.add_argument("--today", type=date.fromisoformat, default=None,
                            help="Snapshot date (YYYY-MM-DD); default today in the clinic's zone")
        parser.add_argument("--api-key", default=None, help="Default: a stable key derived from the seed")
        parser.add_argument("--rate-limit", type=int, default=200,
                            help="Requests per window per user; 0 = off")
        parser.add_argument("--window-seconds", type=float, default=60.0)
        parser.add_argument("--fault-rate", type=float, default=0.0,
                            help="Share of API requests that fail, spread over --fault-kinds")
        parser.add_argument("--fault-kinds", default="",
                            help=f"Comma list of {', '.join(FaultKind)}; default all but timeout")
        parser.add_argument("--fault-seed", type=int, default=0)
        parser.add_argument("--timeout-seconds", type=float, default=30.0,
                            help="How long a timeout fault stalls")
        parser.add_argument("--user-agent-policy", choices=["contact", "present"], default="contact")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            simulator = ClinikoSimulator(
                spec=self._spec(options), host=options["host"], port=options["port"],
                api_key=options["api_key"], rate_limit=options["rate_limit"],
                window_seconds=options["window_seconds"], faults=self._faults(options),
                user_agent_policy=options["user_agent_policy"],
                verbose=options["verbosity"] >= 2,
            )
            self.stdout.write(f"Generating {options['patients']:,} patients (seed {options['seed']})...")
            simulator.start()
        except (ImpossibleClinicError, ValueError) as exc:
            raise CommandError(str(exc)) from None
        except OSError as exc:
            raise CommandError(f"cannot listen on {options['host']}:{options['port']}: {exc}") from None
        # "Press Ctrl-C to stop" must hold even when started by a process that ignores SIGINT
        # (an ignored signal is inherited across exec; Python then installs no handler of its own).
        signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            # Announced inside: a Ctrl-C (or a test's SIGINT) that comes as soon as the
            # announcement is out must still stop the server, whose thread outlives the command.
            self._announce(simulator)
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            self.stdout.write("Stopping.")
        finally:
            simulator.stop()
            stats = simulator.stats.snapshot()
            self.stdout.write(
                f"Served {stats['requests']:,} requests ({stats['rate_limited']:,} rate-limited).")

    @staticmethod
    def _spec(options: dict[str, Any]) -> ClinicSpec:
        # The clinic's own "today", so its history ends before now and changes made while
        # serving always move updated_at forward.
        zone = options["time_zone"]
        try:
            today = options["today"] or datetime.now(ZoneInfo(zone)).date()
        except (ZoneInfoNotFoundError, ValueError):
            raise CommandError(f"unknown time zone {zone!r}") from None
        return ClinicSpec(seed=options["seed"], patients=options["patients"], time_zone=zone, today=today)

    @staticmethod
    def _faults(options: dict[str, Any]) -> FaultPlan:
        kinds = [kind.strip() for kind in options["fault_kinds"].split(",") if kind.strip()] or None
        return FaultPlan.spread(options["fault_rate"], kinds, seed=options["fault_seed"],
                                timeout_seconds=options["timeout_seconds"])

    def _announce(self, simulator: ClinikoSimulator) -> None:
        counts = simulator.store.counts()
        self.stdout.write(self.style.SUCCESS(
            f"Cliniko simulator ready in {simulator.startup_seconds:.1f} s: {counts['patients']:,} patients, "
            f"{counts['individual_appointments']:,} appointments, {counts['invoices']:,} invoices"))
        self.stdout.write(f"Base URL: {simulator.api_url}")
        self.stdout.write(f"API key:  {simulator.api_key}")
        self.stdout.write(
            f"Control:  {simulator.base_url}/__sim/ (stats, faults, rate_limit, clock, mutations)")
        self.stdout.write("Press Ctrl-C to stop.")
        self.stdout.flush()

