"""The tenant's registered gateways: enrolment by one-time code, revocation, and the
config the cloud keeps for each and publishes to it."""
