"""The listener avatar, the face representation it draws, and the sinks it feeds (virtual camera, files, WebRTC)."""
