<?php

// fedictl TEST STAND-IN for Pixelfed: NOT Pixelfed.

namespace App\Standin;

/** A refusal with a message that says what is wrong (missing APP_KEY, DB or Redis down...). */
final class StandinError extends \RuntimeException
{
}
