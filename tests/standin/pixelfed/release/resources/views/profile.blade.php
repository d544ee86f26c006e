<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>{{ $username }} - {{ $appName }}</title></head>
<body>
<p>This is not Pixelfed: it is the fedictl test stand-in, version {{ $version }}.</p>
<h1>{{ $name }} (@{{ $username }})</h1>
</body>
</html>
