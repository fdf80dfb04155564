"""Wire models shared by the server and the SDKs: the protocols podium speaks, as pydantic models."""
