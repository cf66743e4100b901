// burnlink's pages: local expiry times, the download note, and the upload form.
// The upload sends the file's raw bytes as request bodies (as `curl --data-binary` does),
// never a multipart form, so what arrives is byte for byte the file. It speaks tus 1.0 to the
// same URL: when the connection drops it asks the server how much arrived and sends the rest.
(function () {
  'use strict';

  function size(n) {
    var units = ['bytes', 'KB', 'MB', 'GB', 'TB'];
    var i = 0;
    while (n >= 1000 && i < units.length - 1) { n /= 1000; i += 1; }
    return (i === 0 ? String(n) : n.toFixed(n < 10 ? 1 : 0)) + ' ' + units[i];
  }

  document.querySelectorAll('time[datetime]').forEach(function (t) {
    var d = new Date(t.getAttribute('datetime'));
    if (!isNaN(d.getTime())) { t.textContent = d.toLocaleString(); }
  });

  var download = document.getElementById('download-form');
  if (download) {
    download.addEventListener('submit', function () {
      var button = document.getElementById('download-button');
      var note = document.getElementById('download-note');
      note.hidden = false;
      // A double click would start a second transfer that the first one blocks.
      setTimeout(function () { button.disabled = true; }, 0);
      setTimeout(function () { button.disabled = false; }, 5000);
    });
  }

  var form = document.getElementById('upload-form');
  if (!form) { return; }
  var input = document.getElementById('file');
  var drop = document.getElementById('drop');
  var chosenText = document.getElementById('chosen');
  var button = document.getElementById('upload-button');
  var bar = document.getElementById('progress');
  var percent = document.getElementById('percent');
  var status = document.getElementById('status');
  var cap = Number(form.getAttribute('data-cap'));
  var destination = form.getAttribute('data-name') || '';
  var url = window.location.pathname + window.location.search;
  // Resuming after a drop: how often, and how long to wait before each try (ms).
  var RETRIES = 40;
  var PAUSE = [250, 500, 1000, 2000, 3000, 5000];
  var chosen = null;

  function say(text, kind) {
    status.textContent = text;
    status.className = 'status' + (kind ? ' ' + kind : '');
    status.hidden = false;
  }

  function choose(file) {
    chosen = file;
    chosenText.textContent = file.name + ' (' + size(file.size) + ')';
    chosenText.hidden = false;
    if (file.size > cap) {
      button.disabled = true;
      say('This file is ' + size(file.size) + ', more than this link accepts (' + size(cap) +
        '). Choose a smaller file.', 'error');
    } else {
      button.disabled = false;
      status.hidden = true;
    }
  }

  input.addEventListener('change', function () {
    if (input.files && input.files.length) { choose(input.files[0]); }
  });
  ['dragenter', 'dragover'].forEach(function (type) {
    drop.addEventListener(type, function (e) { e.preventDefault(); drop.classList.add('over'); });
  });
  ['dragleave', 'drop'].forEach(function (type) {
    drop.addEventListener(type, function () { drop.classList.remove('over'); });
  });
  drop.addEventListener('drop', function (e) {
    e.preventDefault();
    if (e.dataTransfer && e.dataTransfer.files.length) { choose(e.dataTransfer.files[0]); }
  });

  var messages = {
    too_large: function () {
      return 'The file is larger than this link accepts (' + size(cap) + '). Nothing was saved ' +
        'and the link still works: choose a smaller file.';
    },
    digest_mismatch: function () {
      return 'This is not the file that was expected: its checksum does not match. Nothing was ' +
        'saved and the link still works.';
    },
    exists: function () {
      return 'A file with this name is already there and this link may not replace it. Ask ' +
        'the sender for a new link.';
    },
    in_progress: function () {
      return 'Another upload through this link is running right now. Wait for it, or try again ' +
        'in a moment.';
    },
    used: function () {
      return 'This link has already been used: a file was uploaded through it. Ask the sender ' +
        'for a new link.';
    },
    revoked: function () { return 'This link was cancelled by its sender. Ask for a new one.'; },
    expired: function () { return 'This link has expired. Ask the sender for a new one.'; },
    not_found: function () {
      return 'This link is not valid. Check that it was copied whole, or ask for a new one.';
    },
    unavailable: function () {
      return 'The server cannot check links right now. Nothing was saved: try again in a minute.';
    }
  };

  // A failure the server answered, in words.
  function refused(xhr) {
    var body = null;
    try { body = JSON.parse(xhr.responseText); } catch (e) { body = null; }
    var code = body && body.error;
    var text = messages[code] ? messages[code]() :
      'The upload failed (HTTP ' + xhr.status + ')' + (body && body.message ? ': ' + body.message : '') +
      '. Nothing was saved and the link still works.';
    say(text, 'error');
    ready();
  }

  function done(xhr) {
    form.hidden = true;
    // The server names the file after the link's destination, not after the chosen file.
    say('Done: ' + chosen.name + ' arrived (' + size(chosen.size) + ') and was saved as ' +
      destination + '. You can close this page.', 'ok');
    var digest = /sha-256=:([^:]*):/.exec(xhr.getResponseHeader('Repr-Digest') || '');
    if (digest) {
      var raw = atob(digest[1]);
      var hex = '';
      for (var i = 0; i < raw.length; i += 1) {
        hex += ('0' + raw.charCodeAt(i).toString(16)).slice(-2);
      }
      document.getElementById('digest').textContent = 'SHA-256: ' + hex;
      document.getElementById('digest').hidden = false;
    }
  }

  function show(sent) {
    bar.max = Math.max(chosen.size, 1);
    bar.value = sent;
    percent.textContent = Math.floor((100 * sent) / Math.max(chosen.size, 1)) + '% of ' +
      size(chosen.size);
  }

  function request(method) {
    var xhr = new XMLHttpRequest();
    xhr.open(method, url);
    xhr.setRequestHeader('Tus-Resumable', '1.0.0');
    xhr.setRequestHeader('Accept', 'application/json');
    return xhr;
  }

  // One upload of `chosen`: create it, send from the offset, and after a drop ask the server
  // for the offset and send the rest, a bounded number of times.
  function upload() {
    var tries = 0;

    function again(step) {
      tries += 1;
      if (tries > RETRIES) {
        say('The connection keeps breaking. Nothing was saved and the link still works: ' +
          'press Upload to start again.', 'error');
        ready();
        return;
      }
      say('The connection broke; resuming…');
      setTimeout(step, PAUSE[Math.min(tries - 1, PAUSE.length - 1)]);
    }

    function create() {
      var xhr = request('POST');
      xhr.setRequestHeader('Upload-Length', String(chosen.size));
      xhr.addEventListener('load', function () {
        if (xhr.status !== 201) { refused(xhr); return; }
        send(0);
      });
      xhr.addEventListener('error', function () { again(resume); });
      xhr.send();
    }

    function resume() {
      var xhr = request('HEAD');
      xhr.addEventListener('load', function () {
        if (xhr.status === 404) { create(); return; }
        if (xhr.status !== 200) { again(resume); return; }
        send(Number(xhr.getResponseHeader('Upload-Offset')));
      });
      xhr.addEventListener('error', function () { again(resume); });
      xhr.send();
    }

    function send(offset) {
      show(offset);
      say('Uploading ' + chosen.name + '…');
      var xhr = request('PATCH');
      xhr.setRequestHeader('Content-Type', 'application/offset+octet-stream');
      xhr.setRequestHeader('Upload-Offset', String(offset));
      xhr.upload.addEventListener('progress', function (ev) { show(offset + ev.loaded); });
      xhr.addEventListener('load', function () {
        if (xhr.status === 204) {
          var now = Number(xhr.getResponseHeader('Upload-Offset'));
          if (now >= chosen.size) { done(xhr); } else { tries = 0; send(now); }
          return;
        }
        // Another request still holds the link (the broken one, not yet noticed), or the
        // offset moved: ask again.
        if (xhr.status === 409 && /in_progress|offset_mismatch/.test(xhr.responseText)) {
          again(resume);
          return;
        }
        refused(xhr);
      });
      xhr.addEventListener('error', function () { again(resume); });
      xhr.send(chosen.slice(offset));
    }

    create();
  }

  // After a failure: the same file or another can be sent again.
  function ready() {
    input.disabled = false;
    button.disabled = false;
    bar.hidden = true;
    percent.hidden = true;
  }

  form.addEventListener('submit', function (e) {
    e.preventDefault();
    if (!chosen) { say('Choose a file first.', 'error'); return; }
    input.disabled = true;
    button.disabled = true;
    bar.value = 0;
    bar.hidden = false;
    percent.hidden = false;
    say('Uploading ' + chosen.name + '…');
    upload();
  });
}());
