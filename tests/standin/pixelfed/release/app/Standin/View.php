<?php

// fedictl TEST STAND-IN for Pixelfed: NOT Pixelfed.
//
// A very small Blade: `{{ $var }}` (escaped) and `{!! $var !!}` (raw), compiled to
// storage/framework/views/<sha1 of the path>.php, as Laravel's compiled views are
// (`view:cache` compiles them all; otherwise the first render does).

namespace App\Standin;

final class View
{
    public static function compiledPath(string $view): string
    {
        return App::path('storage/framework/views/' . sha1($view) . '.php');
    }

    public static function compile(string $view): string
    {
        $php = (string) file_get_contents($view);
        $php = (string) preg_replace('/\{!!\s*(.+?)\s*!!\}/', '<?php echo $1; ?>', $php);
        $php = (string) preg_replace('/\{\{\s*(.+?)\s*\}\}/', '<?php echo htmlspecialchars((string) ($1), ENT_QUOTES); ?>', $php);
        $compiled = self::compiledPath($view);
        file_put_contents($compiled, "<?php /* compiled from $view by the fedictl stand-in */ ?>\n" . $php);
        return $compiled;
    }

    /** @param array<string, mixed> $data */
    public static function render(string $name, array $data): string
    {
        $view = App::path("resources/views/$name.blade.php");
        $compiled = self::compiledPath($view);
        if (!is_file($compiled) || filemtime($compiled) < filemtime($view)) {
            self::compile($view);
        }
        extract($data);
        ob_start();
        require $compiled;
        return (string) ob_get_clean();
    }
}
