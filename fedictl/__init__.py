"""fedictl: self-host Mastodon, Pixelfed and PeerTube with Ansible."""

__version__ = "0.1.0"
