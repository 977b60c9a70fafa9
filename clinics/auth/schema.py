"""Tells drf-spectacular how the Bearer scheme looks; imported in ClinicsConfig.ready()."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class BearerAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "clinics.auth.authentication.BearerAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):  # noqa: ANN001, ANN201 - spectacular's signature
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "A Clerk session token, or an organization API key (rq_...).",
        }
