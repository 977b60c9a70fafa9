"""Deterministic synthetic clinics shaped as Cliniko API records; see `generator`."""

from .generator import (
    ClinicSpec,
    ImpossibleClinicError,
    PatientBundle,
    SyntheticClinic,
    appointment_type_prices,
    generate_clinic,
)

__all__ = [
    "ClinicSpec",
    "ImpossibleClinicError",
    "PatientBundle",
    "SyntheticClinic",
    "appointment_type_prices",
    "generate_clinic",
]
