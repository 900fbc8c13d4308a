"""Helpers shared by the tests of several wings: FHIR charts, a CDS service on loopback, report
pages in Chromium, held cohort inputs, and hypothesis strategies for patient facts."""
