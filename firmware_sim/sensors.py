"""Model plausible sensor signals for one simulated device; pure, no I/O."""

from __future__ import annotations

import math
import random
import zlib

TEMPERATURE_BASE_C = 21.0
TEMPERATURE_BASE_SPREAD_C = 1.5  # each device's base lies within ± this of the base
TEMPERATURE_DRIFT_STD_C = 0.8  # long-run spread of the random walk around the base
TEMPERATURE_DRIFT_TIME_S = 600.0  # how fast the walk is pulled back to the base
TEMPERATURE_NOISE_C = 0.05
SETPOINT_TIME_S = 30.0  # time constant of the approach to a setpoint: ~95 % after 3 of them

HUMIDITY_MIN_PCT = 30.0
HUMIDITY_MAX_PCT = 70.0
HUMIDITY_DRIFT_STD_PCT = 2.0
HUMIDITY_DRIFT_TIME_S = 900.0

BATTERY_EMPTY_V = 3.3
BATTERY_FULL_V = 4.1
BATTERY_NOISE_V = 0.002

_SQRT_12 = math.sqrt(12.0)

# Each metric's unit, as SenML (RFC 8428 §12.1) names it.
SENSOR_UNITS: dict[str, str] = {"temperature": "Cel", "humidity": "%RH", "battery": "V"}


class SensorModel:
    """Temperature, humidity and battery of one device, advanced by wall-clock time."""

    def __init__(self, rng: random.Random, start: float) -> None:
        self._rng = rng
        self._start = start
        self._last = start
        self._temperature_base = TEMPERATURE_BASE_C + rng.uniform(
            -TEMPERATURE_BASE_SPREAD_C, TEMPERATURE_BASE_SPREAD_C
        )
        self._temperature_drift = rng.gauss(0.0, TEMPERATURE_DRIFT_STD_C / 2)
        # The level the drift and noise ride on: the base until a setpoint moves it.
        self._temperature_level = self._temperature_base
        self._temperature_target = self._temperature_base
        self._level_at = start
        self._humidity_mid = rng.uniform(42.0, 58.0)
        self._humidity_amplitude = rng.uniform(4.0, 9.0)
        self._humidity_period_s = rng.uniform(1800.0, 7200.0)
        self._humidity_phase = rng.uniform(0.0, 2 * math.pi)
        self._humidity_drift = 0.0
        self._battery_start_v = rng.uniform(BATTERY_FULL_V - 0.1, BATTERY_FULL_V + 0.05)
        # Time constant of the drain: a few days to a couple of weeks to go flat.
        self._battery_tau_s = rng.uniform(2.0, 10.0) * 86_400

    @classmethod
    def for_device(cls, uid: str, start: float) -> SensorModel:
        """Create the model of a device, seeded from its uid so runs are repeatable."""
        return cls(random.Random(zlib.crc32(uid.encode())), start)  # noqa: S311

    def set_setpoint(self, value: float, at: float) -> None:
        """Make the temperature approach `value` °C from epoch seconds `at` on."""
        self._approach(at)
        self._temperature_target = value

    def read(self, at: float) -> dict[str, float]:
        """Advance the signals to epoch seconds `at` and return one rounded reading."""
        if at > self._level_at:
            self._approach(at)
        dt = max(0.0, at - self._last)
        self._last = max(self._last, at)
        elapsed = self._last - self._start
        self._temperature_drift = self._walk(
            self._temperature_drift, dt, TEMPERATURE_DRIFT_TIME_S, TEMPERATURE_DRIFT_STD_C
        )
        self._humidity_drift = self._walk(
            self._humidity_drift, dt, HUMIDITY_DRIFT_TIME_S, HUMIDITY_DRIFT_STD_PCT
        )
        temperature = (
            self._temperature_level + self._temperature_drift + TEMPERATURE_NOISE_C * self._noise()
        )
        cycle = math.sin(2 * math.pi * elapsed / self._humidity_period_s + self._humidity_phase)
        humidity = self._humidity_mid + self._humidity_amplitude * cycle + self._humidity_drift
        humidity = min(HUMIDITY_MAX_PCT, max(HUMIDITY_MIN_PCT, humidity))
        fade = math.exp(-elapsed / self._battery_tau_s)
        charge = (self._battery_start_v - BATTERY_EMPTY_V) * fade
        battery = BATTERY_EMPTY_V + charge + BATTERY_NOISE_V * self._noise()
        battery = max(BATTERY_EMPTY_V, battery)
        return {
            "temperature": round(temperature, 2),
            "humidity": round(humidity, 1),
            "battery": round(battery, 3),
        }

    def _approach(self, at: float) -> None:
        """Move the temperature level towards its target up to `at` (exponential, no noise)."""
        dt = at - self._level_at
        if dt > 0:
            self._level_at = at
            target = self._temperature_target
            gap = self._temperature_level - target
            # Without a setpoint the gap is exactly 0 and the level stays the base.
            if gap:
                self._temperature_level = target + gap * math.exp(-dt / SETPOINT_TIME_S)

    def _walk(self, value: float, dt: float, time_s: float, std: float) -> float:
        """Step a mean-reverting random walk (Ornstein-Uhlenbeck), exact for any dt."""
        decay = math.exp(-dt / time_s)
        return value * decay + std * math.sqrt(1.0 - decay * decay) * self._noise()

    def _noise(self) -> float:
        """Return zero-mean, unit-variance noise (uniform: a fraction of gauss()'s cost)."""
        return (self._rng.random() - 0.5) * _SQRT_12
