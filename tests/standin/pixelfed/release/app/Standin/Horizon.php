<?php

// fedictl TEST STAND-IN for Pixelfed: NOT Pixelfed.
//
// `php artisan horizon`: a long-running queue worker in the shape of Laravel Horizon's master
// supervisor. It registers itself in Redis (horizon:masters, horizon:master:NAME with a 15 s
// TTL refreshed every loop, which `horizon:status` reads), pops jobs from Pixelfed's queues
// (BLPOP on queues:high, queues:default, ... with the REDIS_* connection, password and database)
// and runs them against PostgreSQL. It exits 0 on SIGTERM or when `horizon:terminate` was called
// after it started, so that systemd (Restart=always) starts it again with the new release.

namespace App\Standin;

final class Horizon
{
    private bool $stop = false;

    public function run(): int
    {
        if (Release::BROKEN) {
            $msg = 'stand-in v' . App::version() . ' is broken on purpose: Horizon refuses to start';
            App::log('critical', $msg);
            fwrite(STDERR, "[stand-in pixelfed] $msg\n");
            return 1;
        }
        App::requireKey();
        App::db();
        $r = App::redis();
        $prefix = App::prefix();
        $queues = array_map(fn ($q) => $prefix . 'queues:' . $q, (array) App::get('horizon.queues'));
        $name = gethostname() . '-' . bin2hex(random_bytes(2));
        $started = microtime(true);
        pcntl_async_signals(true);
        pcntl_signal(SIGTERM, function () { $this->stop = true; });
        pcntl_signal(SIGINT, function () { $this->stop = true; });
        $this->say("Horizon started successfully. (master $name, pid " . getmypid() . ', version ' . App::version() . ')');
        $r->sAdd($prefix . 'horizon:masters', $name);
        while (!$this->stop) {
            $r->setex($prefix . "horizon:master:$name", 15, (string) json_encode([
                'name' => $name, 'host' => gethostname(), 'pid' => getmypid(), 'status' => 'running',
                'version' => App::version(), 'started_at' => $started,
            ]));
            $terminate = (float) $r->get($prefix . 'horizon:terminate');
            if ($terminate > $started) {
                $this->say('horizon:terminate was called: exiting so that the supervisor restarts Horizon');
                break;
            }
            try {
                $popped = $r->blPop($queues, 2);
            } catch (\RedisException $e) {
                if ($this->stop) {
                    break;
                }
                throw new StandinError('Redis: ' . $e->getMessage());
            }
            if (is_array($popped) && count($popped) === 2) {
                $this->handle(substr($popped[0], strlen($prefix . 'queues:')), (string) $popped[1]);
            }
        }
        $r->del($prefix . "horizon:master:$name");
        $r->sRem($prefix . 'horizon:masters', $name);
        $this->say('Shutting down.');
        return 0;
    }

    private function say(string $message): void
    {
        fwrite(STDOUT, '[' . date('Y-m-d H:i:s') . "] [stand-in pixelfed] horizon: $message\n");
        App::log('info', "horizon: $message");
    }

    private function handle(string $queue, string $payload): void
    {
        $job = json_decode($payload, true);
        $type = is_array($job) ? (string) ($job['job'] ?? '') : '';
        if ($type === 'ImageOptimize') { // Pixelfed's ImageOptimize pipeline, in one UPDATE
            $q = App::db()->prepare('UPDATE media SET processed_at = now() WHERE id = ?');
            $q->execute([(int) $job['media_id']]);
            $this->say("processed $type for media {$job['media_id']} on queue $queue");
            return;
        }
        $this->say("unknown job on queue $queue: " . substr($payload, 0, 200));
    }
}
