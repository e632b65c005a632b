/* Proof-of-work solver (ALTCHA): find n in 0..maxnumber with hex(SHA(salt + n)) == challenge.
   Runs in a Web Worker, so the page never freezes; hashes in batches with the Web Crypto API. */
"use strict";
var encoder = new TextEncoder();
var BATCH = 200;

function toBytes(hex) {
  var out = new Uint8Array(hex.length >> 1);
  for (var i = 0; i < out.length; i++) out[i] = parseInt(hex.substr(i * 2, 2), 16);
  return out;
}

function same(buffer, target) {
  var b = new Uint8Array(buffer);
  if (b.length !== target.length) return false;
  for (var i = 0; i < b.length; i++) if (b[i] !== target[i]) return false;
  return true;
}

self.onmessage = async function (e) {
  var job = e.data, target = toBytes(String(job.challenge).toLowerCase());
  var algorithm = job.algorithm || "SHA-256", max = Number(job.maxnumber) || 1000000;
  try {
    for (var start = 0, round = 0; start <= max; start += BATCH, round++) {
      var end = Math.min(start + BATCH - 1, max), hashes = [];
      for (var n = start; n <= end; n++) hashes.push(crypto.subtle.digest(algorithm, encoder.encode(job.salt + n)));
      var done = await Promise.all(hashes);
      for (var i = 0; i < done.length; i++) {
        if (same(done[i], target)) { self.postMessage({ id: job.id, number: start + i }); return; }
      }
      if (round % 25 === 24) self.postMessage({ id: job.id, progress: end / max });
    }
  } catch (err) { /* unsupported algorithm: fall through */ }
  self.postMessage({ id: job.id, number: null });
};
