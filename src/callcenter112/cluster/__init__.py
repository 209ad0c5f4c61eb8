"""Running callcenter112 as more than one node: the SIP edge and node roles.

`kamailio` renders the shipped Kamailio template (deploy/kamailio/) for a site;
`role` is what a node answers the edge's probes and whether it takes calls.
"""

__all__: list[str] = []
