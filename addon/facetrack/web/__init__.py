"""The engine's HTTP server: live snapshots and MJPEG streams, signed clip URLs, the web page.

Import the modules themselves (``facetrack.web.signing``, ``.frames``, ``.server``, ``.api``): this
package imports nothing, so a light user (the RTSP publisher needs only :mod:`.signing`) does not
load the tracker, the library and aiohttp.
"""
