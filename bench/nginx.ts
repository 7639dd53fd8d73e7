// B4: nginx proxy_cache in front of the B1 server, answering the same object from its cache (the C
// reference for a cache hit). One process (master_process off) so its CPU and RSS read like a
// Node process's; everything it writes stays in the run's temporary directory.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { pinnedCommand } from './children.js'

export const NGINX_HINT = 'B4 skipped: nginx is not installed (Debian: apt-get update && apt-get install -y nginx)'
const READY_TIMEOUT_MS = 10000

export function hasNginx (): boolean {
  return spawnSync('nginx', ['-v']).error === undefined
}

async function freePort (): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      const port = typeof address === 'object' && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })
}

function config (dir: string, port: number, upstream: string): string {
  return `daemon off;
master_process off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  proxy_cache_path ${dir}/cache keys_zone=bench:10m;
  upstream origin { server ${upstream}; keepalive 16; }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache bench;
      proxy_cache_key $uri;
      proxy_cache_valid 200 1h;
      proxy_ignore_headers Cache-Control Expires Set-Cookie;
      add_header X-Cache $upstream_cache_status;
    }
  }
}
`
}

export interface Nginx { origin: string, pid: number, stop: () => Promise<void> }

/** Starts nginx on a free loopback port, caching `upstream` (host:port). */
export async function startNginx (tmpDir: string, upstream: string, cpu: number, cores: number): Promise<Nginx> {
  const dir = join(tmpDir, 'nginx')
  mkdirSync(dir, { recursive: true })
  const port = await freePort()
  writeFileSync(join(dir, 'nginx.conf'), config(dir, port, upstream))
  const [cmd, args] = pinnedCommand('nginx', ['-p', dir, '-c', join(dir, 'nginx.conf')], cpu, cores)
  const child: ChildProcess = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'inherit'] })
  const origin = `http://127.0.0.1:${port}`
  const deadline = Date.now() + READY_TIMEOUT_MS
  for (;;) {
    try {
      await fetch(origin + '/')
      break
    } catch {
      if (Date.now() > deadline || child.exitCode !== null) throw new Error('nginx did not start (see its error.log in the run directory)')
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
  }
  return {
    origin,
    pid: child.pid ?? 0,
    async stop () {
      if (child.exitCode !== null) return
      const exited = new Promise((resolve) => child.once('exit', resolve))
      child.kill('SIGTERM')
      await exited
    }
  }
}
