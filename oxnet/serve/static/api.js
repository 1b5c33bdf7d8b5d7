// The API calls of the review page and the annotation view. The service may need an API token: asked
// once, kept for this tab (sessionStorage, so both pages share it), sent as "Authorization: Bearer"; a
// 401 asks again. The page's own script defines $ (by id) and setStatus(text, error) before any call.
"use strict";

const TOKEN_KEY = "oxnet-api-token";

async function errorText(resp) {
  try { const body = await resp.json(); return `${resp.status}: ${body.detail}`; }
  catch (e) { return `${resp.status} ${resp.statusText}`; }
}

function askToken(reason) {
  return new Promise((resolve) => {
    const box = $("token-box");
    box.hidden = false;
    $("token-reason").textContent = reason;
    $("token").focus();
    box.onsubmit = (e) => {
      e.preventDefault();
      const token = $("token").value.trim();
      if (!token) return;
      sessionStorage.setItem(TOKEN_KEY, token);
      $("token").value = "";
      box.hidden = true;
      resolve(token);
    };
  });
}

async function api(url, options) {
  for (;;) {
    const opts = Object.assign({}, options || {});
    const token = sessionStorage.getItem(TOKEN_KEY);
    opts.headers = Object.assign({}, opts.headers || {}, token ? { Authorization: "Bearer " + token } : {});
    const resp = await fetch(url, opts);
    if (resp.status !== 401) return resp;
    sessionStorage.removeItem(TOKEN_KEY);
    setStatus("this service needs an API token", "error");
    await askToken(await errorText(resp));
    setStatus("");
  }
}
