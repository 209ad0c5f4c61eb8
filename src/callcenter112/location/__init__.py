"""Where the caller is: fixes from PIDF-LO, AML and the operator, reduced to a point.

Pure (no asyncio, socket or clock reads: tests/test_purity.py): every
function takes the bytes or text that arrived and the `now` to stamp with,
and returns `Fix` records; a bad document is a `Fix` with ``valid=False``
and a reason, never an exception.

Modules: `fix` (the `Fix` record and the incident's ``location`` JSON),
`geometry` (shapes → point + uncertainty radius), `pidf` (PIDF-LO parse and
serialize, Geolocation and Call-Info headers), `invite` (an INVITE's body and
headers → SDP + `LocationReport`), `aml` (ELS HTTPS form, SMS v1/v2),
`match` (a fix → the live call or recent incident of its caller), `areas`
(a point → kecamatan/kelurahan), `eido` (NENA EIDO export), `sink` (the typed
seam through which fixes reach the centre).
"""
