/** The demo's one page: it says hello through the JSON API and chats on the broadcast channel. */
export const page = `<!doctype html>
<html lang="en">
<meta charset="utf-8">
<title>portbind demo</title>
<style>
  body { font: 16px/1.5 system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; padding: 0 1rem; }
  #log { border: 1px solid #ccc; min-height: 8rem; padding: .5rem; white-space: pre-wrap; }
  code { background: #f4f4f4; padding: 0 .2rem; }
</style>
<h1>portbind demo</h1>
<p>This page, a JSON API and two WebSocket channels share one port.
Try <a href="/api/hello?name=you"><code>/api/hello?name=you</code></a>,
<a href="/api/stats"><code>/api/stats</code></a>, <a href="/readyz"><code>/readyz</code></a>.</p>
<h2>Broadcast channel <small id="state">connecting…</small></h2>
<form id="form"><input id="text" autocomplete="off" placeholder="say something" autofocus> <button>Send</button></form>
<div id="log"></div>
<script>
  const log = document.getElementById('log');
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const socket = new WebSocket(scheme + '//' + location.host + '/ws/broadcast');
  socket.onopen = () => { document.getElementById('state').textContent = 'connected'; };
  socket.onclose = () => { document.getElementById('state').textContent = 'closed'; };
  socket.onmessage = (event) => { log.textContent += event.data + '\\n'; };
  document.getElementById('form').onsubmit = (event) => {
    event.preventDefault();
    const input = document.getElementById('text');
    if (input.value) socket.send(input.value);
    input.value = '';
  };
</script>
</html>
`;
