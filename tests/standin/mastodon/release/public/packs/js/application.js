// fedictl test stand-in for Mastodon's compiled web client, not Mastodon.
document.documentElement.dataset.standin = 'mastodon';
