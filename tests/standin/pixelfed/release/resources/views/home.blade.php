<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>{{ $appName }}</title></head>
<body>
<h1>{{ $appName }}</h1>
<p>This is not Pixelfed: it is the fedictl test stand-in, version {{ $version }}, for tests only.</p>
</body>
</html>
