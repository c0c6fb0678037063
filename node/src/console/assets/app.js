// Hush admin console. No framework, no build step, nothing from another host: the node serves
// this file itself. Every text from the server is set with textContent, never parsed as HTML.
"use strict";

const state = { me: null, csrf: "", events: null, page: "", onAudit: null, timer: null };

// ---- DOM helpers -------------------------------------------------------------------------

function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const kid of kids.flat()) {
    if (kid === null || kid === undefined || kid === false) continue;
    el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return el;
}

function show(...kids) {
  const main = document.getElementById("main");
  main.replaceChildren(...kids);
}

function toast(text) {
  const t = h("div", { text });
  document.getElementById("toast").append(t);
  setTimeout(() => t.remove(), 4000);
}

function when(ms) {
  return ms ? new Date(ms).toISOString().replace("T", " ").slice(0, 19) + " UTC" : "—";
}

// ---- API -----------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || "HTTP " + status);
    this.status = status;
    this.code = (body && body.error) || "http_" + status;
  }
}

async function call(method, path, body) {
  const headers = { accept: "application/json" };
  if (method !== "GET") headers["x-csrf-token"] = state.csrf;
  if (body !== undefined) headers["content-type"] = "application/json";
  const r = await fetch(path, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  const data = text ? JSON.parse(text) : null;
  if (!r.ok) throw new ApiError(r.status, data);
  return data;
}

// A call that may need a recent second-factor verification: asks for a code, then retries.
async function act(method, path, body) {
  try {
    return await call(method, path, body);
  } catch (e) {
    if (e.code !== "step_up_required") throw e;
    await stepUp();
    return call(method, path, body);
  }
}

function stepUp() {
  return new Promise((resolve, reject) => {
    const err = h("p", { class: "error", id: "stepup-error" });
    const code = h("input", { id: "stepup-code", autocomplete: "one-time-code", inputmode: "numeric", required: true });
    const form = h("form", { class: "card", id: "stepup" },
      h("h2", { text: "Confirm with your second factor" }),
      h("label", {}, "Authenticator or backup code", code), err,
      h("button", { class: "primary", type: "submit", text: "Confirm" }),
      h("button", { type: "button", text: "Cancel", onclick: () => { form.remove(); reject(new Error("cancelled")); } }));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      try {
        await answerChallenge(code.value.trim());
        form.remove();
        resolve();
      } catch (e) {
        err.textContent = e.message;
      }
    });
    document.getElementById("main").prepend(form);
    code.focus();
  });
}

async function answerChallenge(code) {
  const ch = await call("POST", "/v1/mfa/challenge");
  const path = /^\d+$/.test(code) ? "/v1/mfa/verify" : "/v1/mfa/backup";
  return call("POST", path, { challenge_id: ch.challenge_id, code });
}

// ---- sign-in -------------------------------------------------------------------------------

function signInPage(message) {
  stopEvents();
  clearInterval(state.timer);
  state.timer = null;
  setChrome(false);
  const err = h("p", { class: "error", id: "signin-error", text: message || "" });
  const tenant = h("input", { id: "tenant", name: "tenant", value: "default", required: true });
  const user = h("input", { id: "user", name: "user", autocomplete: "username", required: true });
  const password = h("input", { id: "password", name: "password", type: "password", autocomplete: "current-password", required: true });
  const form = h("form", { class: "card", id: "signin" },
    h("h1", { text: "Sign in" }),
    h("label", {}, "Tenant", tenant), h("label", {}, "User", user), h("label", {}, "Password", password),
    err, h("button", { class: "primary", type: "submit", id: "signin-submit", text: "Sign in" }));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    err.textContent = "";
    try {
      const me = await call("POST", "/console/session",
        { tenant: tenant.value.trim(), user: user.value.trim(), password: password.value });
      password.value = "";
      await signedIn(me);
    } catch (e) {
      err.textContent = e.code === "forbidden" ? "This account is not an administrator." : e.message;
    }
  });
  show(form);
  user.focus();
}

function mfaPage(me) {
  const err = h("p", { class: "error", id: "mfa-error" });
  const code = h("input", { id: "mfa-code", autocomplete: "one-time-code", required: true });
  const form = h("form", { class: "card", id: "mfa" },
    h("h1", { text: "Second factor" }),
    h("p", { class: "muted", text: "Enter the code of your authenticator app, or one of your backup codes." }),
    h("label", {}, "Code", code), err,
    h("button", { class: "primary", type: "submit", id: "mfa-submit", text: "Verify" }));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    err.textContent = "";
    try {
      await answerChallenge(code.value.trim());
      await signedIn(await call("GET", "/console/session"));
    } catch (e) {
      err.textContent = e.code === "mfa_locked" ? "Too many wrong codes: locked for now." : e.message;
    }
  });
  setChrome(false);
  show(form);
  code.focus();
}

// A one-time password (the bootstrap one, or one from `hushd admin reset-password`) serves one
// sign-in: the administrator chooses a password before anything else.
function passwordPage() {
  const err = h("p", { class: "error", id: "password-error" });
  const input = (id, auto) => h("input", { id, type: "password", autocomplete: auto, required: true });
  const current = input("current-password", "current-password");
  const next = input("new-password-1", "new-password");
  const again = input("new-password-2", "new-password");
  const form = h("form", { class: "card", id: "password-form" },
    h("h1", { text: "Choose a password" }),
    h("p", { class: "muted", text: "This account signed in with a one-time password. Choose your own (8 characters or more) to go on; your other sessions end." }),
    h("label", {}, "Current (one-time) password", current), h("label", {}, "New password", next),
    h("label", {}, "New password again", again), err,
    h("button", { class: "primary", type: "submit", id: "password-submit", text: "Set password" }));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    err.textContent = "";
    if (next.value !== again.value) { err.textContent = "The two new passwords differ."; return; }
    try {
      await call("POST", "/v1/account/password", { current_password: current.value, new_password: next.value });
      toast("Password changed");
      await signedIn(await call("GET", "/console/session"));
    } catch (e) {
      err.textContent = e.code === "wrong_password" ? "The current password is wrong." : e.message;
    }
  });
  setChrome(false);
  show(form);
  current.focus();
}

// The tenant requires a second factor and the grace period is over: enrol TOTP, then keep the
// backup codes, shown this once.
async function enrolPage() {
  stopEvents();
  const e = await call("POST", "/v1/mfa/totp/enroll");
  const err = h("p", { class: "error", id: "enrol-error" });
  const code = h("input", { id: "enrol-code", autocomplete: "one-time-code", required: true });
  const form = h("form", { class: "card", id: "enrol" },
    h("h1", { text: "Set up a second factor" }),
    h("p", { class: "muted", text: "The tenant requires one. Scan the code with an authenticator app, or type the key, then enter the code the app shows." }),
    h("img", { id: "enrol-qr", alt: "QR code of the key", width: 200, height: 200, src: "data:image/png;base64," + e.qr_png_base64 }),
    h("p", {}, "Key: ", h("code", { id: "enrol-secret", class: "mono", text: e.secret })),
    h("p", { class: "muted", text: e.algorithm + ", " + e.digits + " digits, every " + e.period + " s" }),
    h("label", {}, "Code", code), err,
    h("button", { class: "primary", type: "submit", id: "enrol-submit", text: "Confirm" }));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    err.textContent = "";
    try {
      backupPage((await call("POST", "/v1/mfa/totp/confirm", { code: code.value.trim() })).codes);
    } catch (x) { err.textContent = x.message; }
  });
  setChrome(false);
  show(form);
  code.focus();
}

function backupPage(codes) {
  const done = h("button", { class: "primary", type: "button", id: "backup-done", text: "I have kept them",
    onclick: async () => signedIn(await call("GET", "/console/session")) });
  setChrome(false);
  show(h("div", { class: "card", id: "backup" }, h("h1", { text: "Backup codes" }),
    h("p", { class: "muted", text: "Each code signs you in once if you lose your authenticator. They are shown only now: keep them somewhere safe." }),
    h("ol", { id: "backup-codes", class: "mono" }, codes.map((c) => h("li", { text: c }))), done));
}

async function signedIn(me) {
  state.me = me;
  state.csrf = me.csrf;
  const mfa = me.mfa && me.mfa.state;
  if (mfa === "mfa_pending") return mfaPage(me);
  if (me.password_change_required) return passwordPage();
  if (mfa === "enroll_required") return enrolPage();
  setChrome(true);
  startEvents();
  route();
}

function setChrome(on) {
  document.getElementById("nav").hidden = !on;
  document.getElementById("signout").hidden = !on;
  document.getElementById("who").textContent = on && state.me ? state.me.user + " @ " + state.me.tenant : "";
}

async function signOut() {
  // Stop what would notice the session ending (the event stream's error handler, a page's
  // refresh timer) first, or it may say "Your session ended." after "Signed out.".
  stopEvents();
  clearInterval(state.timer);
  state.timer = null;
  state.onAudit = null;
  state.me = null;
  try { await call("DELETE", "/console/session"); } catch (e) { /* already ended */ }
  signInPage("Signed out.");
}

// ---- live events ---------------------------------------------------------------------------

function startEvents() {
  stopEvents();
  const es = new EventSource("/console/events");
  es.addEventListener("audit", (ev) => {
    const rec = JSON.parse(ev.data);
    if (state.onAudit) state.onAudit(rec);
  });
  es.addEventListener("resync", () => { if (state.onAudit) state.onAudit(null); });
  es.onerror = async () => {
    // The stream ends with the session: find out whether we are still signed in (unless this
    // stream was stopped on purpose).
    if (state.events !== es) return;
    try { await call("GET", "/console/session"); } catch (e) { if (e.status === 401) signInPage("Your session ended."); }
  };
  state.events = es;
}

function stopEvents() {
  if (state.events) state.events.close();
  state.events = null;
}

// ---- pages ---------------------------------------------------------------------------------

const pages = { sessions: sessionsPage, users: usersPage, policy: policyPage, audit: auditPage, health: healthPage };

function route() {
  if (!state.me) return;
  const name = (location.hash.replace(/^#\//, "") || "sessions").split("?")[0];
  const page = pages[name] ? name : "sessions";
  state.page = page;
  state.onAudit = null;
  clearInterval(state.timer);
  state.timer = null;
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.page === page);
  pages[page]().catch((e) => {
    if (!state.me) return; // signed out meanwhile: the sign-in page says so
    // The session's MFA state moved since sign-in (a grace period ran out, a policy changed).
    if (e.code === "mfa_enrollment_required") enrolPage().catch((x) => signInPage(x.message));
    else if (e.code === "mfa_required") call("GET", "/console/session").then(signedIn, () => signInPage("Your session ended."));
    else if (e.status === 401) signInPage("Your session ended.");
    else show(h("p", { class: "error", text: e.message }));
  });
}

async function sessionsPage() {
  const body = h("tbody", { id: "sessions-body" });
  const table = h("table", { id: "sessions" },
    h("thead", {}, h("tr", {}, ["User", "Device", "Session", "Node", "Created", "Last seen", "Expires", "Address", "MFA", ""].map((t) => h("th", { text: t })))),
    body);
  const filter = h("input", { id: "sessions-user", placeholder: "user" });
  const count = h("span", { class: "muted", id: "sessions-count" });
  async function load() {
    const user = filter.value.trim();
    const list = user
      ? await call("GET", "/v1/admin/users/" + encodeURIComponent(user) + "/sessions")
      : await call("GET", "/v1/admin/sessions/active?limit=500");
    const rows = list.sessions.filter((s) => !s.revoked);
    body.replaceChildren(...rows.map(sessionRow));
    count.textContent = rows.length + " active session(s)" + (list.next ? " (more not shown)" : "");
  }
  function sessionRow(s) {
    const mfa = s.mfa ? (s.mfa.method || s.mfa.state) : "—";
    const revoke = h("button", { class: "danger", "data-session": s.id, text: s.current ? "This session" : "Revoke", disabled: s.current || null,
      onclick: async () => {
        try {
          await act("DELETE", "/v1/admin/sessions/" + encodeURIComponent(s.id));
          toast("Session " + s.id.slice(0, 8) + " revoked");
          await load();
        } catch (e) { toast(e.message); }
      } });
    return h("tr", { "data-session": s.id },
      h("td", { text: s.user }), h("td", { text: s.device }), h("td", { text: s.id.slice(0, 12) }),
      h("td", { class: "node", text: s.node || "not connected" }), h("td", { text: when(s.created_ms) }), h("td", { text: when(s.last_seen_ms) }), h("td", { text: when(s.expires_ms) }),
      h("td", { text: s.ip || "—" }), h("td", { text: mfa }), h("td", {}, revoke));
  }
  const revokeUser = h("button", { class: "danger", id: "revoke-user", text: "Revoke all of this user",
    onclick: async () => {
      const user = filter.value.trim();
      if (!user) return toast("Name a user first");
      try {
        const r = await act("DELETE", "/v1/admin/users/" + encodeURIComponent(user) + "/sessions");
        toast(r.revoked + " session(s) of " + user + " revoked");
        await load();
      } catch (e) { toast(e.message); }
    } });
  const revokeAll = h("button", { class: "danger", id: "revoke-all", text: "Revoke every session of the tenant (but mine)",
    onclick: async () => {
      try {
        const r = await act("DELETE", "/v1/admin/sessions/active");
        toast(r.revoked + " session(s) revoked");
        await load();
      } catch (e) { toast(e.message); }
    } });
  show(h("h1", { text: "Sessions" }),
    h("div", { class: "row" }, h("label", {}, "User", filter),
      h("button", { type: "button", text: "Show", onclick: () => load().catch((e) => toast(e.message)) }), revokeUser, revokeAll),
    count, table);
  await load();
  // Live: any login, revocation or expiry anywhere in the tenant reloads the list.
  state.onAudit = (rec) => {
    if (!rec || /^(login|session\.|device\.|password\.)/.test(rec.action)) load().catch(() => {});
  };
}

async function usersPage() {
  const body = h("tbody", { id: "users-body" });
  const search = h("input", { id: "users-search", placeholder: "search" });
  let all = [];
  function render() {
    const q = search.value.trim().toLowerCase();
    body.replaceChildren(...all.filter((u) => !q || u.user.toLowerCase().includes(q)).map(userRow));
  }
  function userRow(u) {
    const tags = [];
    tags.push(h("span", { class: "tag " + (u.totp_enabled ? "ok" : ""), text: u.totp_enabled ? "TOTP" : "no TOTP" }));
    if (u.required) tags.push(h("span", { class: "tag", text: "required" }));
    if (u.enforced) tags.push(h("span", { class: "tag", text: "enforced" }));
    if (u.exempt) tags.push(h("span", { class: "tag", text: "exempt" }));
    if (u.enroll_deadline_ms) tags.push(h("span", { class: "tag", text: "grace until " + when(u.enroll_deadline_ms) }));
    if (u.locked_until_ms) tags.push(h("span", { class: "tag bad", text: "MFA locked until " + when(u.locked_until_ms) }));
    const path = "/v1/admin/users/" + encodeURIComponent(u.user);
    const button = (label, fn) => h("button", { type: "button", text: label, onclick: async () => {
      try { await fn(); toast(label + ": " + u.user); await load(); } catch (e) { toast(e.message); }
    } });
    return h("tr", { "data-user": u.user },
      h("td", { text: u.user }), h("td", { text: u.admin ? "admin" : "user" }),
      h("td", { class: "num", text: u.backup_codes_left }), h("td", {}, tags),
      h("td", {},
        button("Enforce MFA", () => act("POST", path + "/mfa/enforce")),
        button("Reset MFA", () => act("DELETE", path + "/mfa")),
        button("Unlock", () => act("POST", path + "/unlock")),
        h("button", { type: "button", class: "devices", text: "Devices", onclick: (ev) => toggleDevices(ev.target.closest("tr"), u.user) }),
        h("a", { href: "#/sessions", onclick: () => setTimeout(() => { const f = document.getElementById("sessions-user"); if (f) { f.value = u.user; f.nextSibling.click(); } }, 50), text: "sessions" })));
  }
  // A user's devices in a row under theirs (the identity key's fingerprint, never a secret).
  async function toggleDevices(tr, user) {
    const next = tr.nextElementSibling;
    if (next && next.dataset.devicesOf === user) return next.remove();
    try {
      const list = await call("GET", "/v1/users/" + encodeURIComponent(user) + "/devices");
      const rows = list.devices.map((d) => h("tr", { "data-device": d.id },
        h("td", { text: d.id }), h("td", { text: d.name }), h("td", { text: when(d.created_ms) }),
        h("td", { text: d.registration_id }), h("td", { class: "mono", text: d.identity_key ? d.identity_key.slice(0, 16) + "…" : "none" })));
      const inner = h("table", { class: "devices" },
        h("thead", {}, h("tr", {}, ["Device", "Name", "Registered", "Registration id", "Identity key"].map((t) => h("th", { text: t })))),
        h("tbody", {}, rows));
      tr.after(h("tr", { "data-devices-of": user }, h("td", { colspan: 5 }, list.devices.length ? inner : h("span", { class: "muted", text: "No devices." }))));
    } catch (e) { toast(e.message); }
  }
  async function load() {
    const list = await call("GET", "/v1/admin/users/mfa-status?limit=500");
    all = list.users;
    render();
  }
  search.addEventListener("input", render);
  const name = h("input", { id: "new-user", placeholder: "name" });
  const pw = h("input", { id: "new-password", type: "password", placeholder: "initial password", autocomplete: "new-password" });
  const admin = h("input", { id: "new-admin", type: "checkbox" });
  const create = h("form", { class: "row", id: "create-user" }, h("label", {}, "New user", name), h("label", {}, "Password", pw),
    h("label", {}, "Admin", admin), h("button", { class: "primary", type: "submit", text: "Create" }));
  create.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      await act("POST", "/v1/admin/users", { user: name.value.trim(), password: pw.value, admin: admin.checked });
      toast("Created " + name.value.trim());
      name.value = ""; pw.value = ""; admin.checked = false;
      await load();
    } catch (e) { toast(e.message); }
  });
  show(h("h1", { text: "Users" }), create, h("div", { class: "row" }, search),
    h("table", { id: "users" }, h("thead", {}, h("tr", {}, ["User", "Role", "Backup codes", "MFA", ""].map((t) => h("th", { text: t })))), body));
  await load();
}

async function policyPage() {
  const [mfa, sessions, users] = await Promise.all([
    call("GET", "/v1/admin/tenant/mfa"), call("GET", "/v1/admin/tenant/sessions"), call("GET", "/v1/admin/users/mfa-status?limit=500")]);
  const field = (id, label, value, attrs) => {
    const input = h("input", Object.assign({ id, value: value === null || value === undefined ? "" : value }, attrs || {}));
    return [h("label", { class: "field" }, label, input), input];
  };
  const level = h("select", { id: "mfa-level" }, ["off", "optional", "required_for_admins", "required"].map((l) => h("option", { value: l, text: l, selected: mfa.level === l || null })));
  const [graceF, grace] = field("mfa-grace", "Grace period (seconds)", mfa.grace_period_secs, { type: "number", min: 0 });
  const [exemptF, exempt] = field("mfa-exempt", "Exempt users (comma-separated)", mfa.exempt_users.join(", "));
  const [trustF, trust] = field("mfa-trust", "Trusted device days", mfa.trusted_device_days, { type: "number", min: 0 });
  const [stepF, step] = field("mfa-stepup", "Step-up window (seconds)", mfa.step_up_window_secs, { type: "number", min: 1 });
  const choose = (id, options, current) => h("select", { id }, options.map((o) => h("option", { value: o, text: o, selected: String(current) === String(o) || null })));
  const algorithm = choose("mfa-algorithm", ["SHA1", "SHA256", "SHA512"], mfa.totp_algorithm);
  const digits = choose("mfa-digits", [6, 8], mfa.totp_digits);
  const roles = ["admin", "member"].map((r) => h("input", { type: "checkbox", id: "mfa-exempt-" + r, value: r, checked: mfa.exempt_roles.includes(r) || null }));
  const rolesF = h("fieldset", { class: "field" }, h("legend", { text: "Exempt roles" }), ...roles.map((c) => h("label", {}, c, " " + c.value)));
  const preview = h("p", { class: "muted", id: "mfa-preview" });
  const err = h("p", { class: "error", id: "policy-error" });
  function affected() {
    const g = Number(grace.value);
    const now = Date.now();
    const moved = users.users.filter((u) => u.enroll_deadline_ms && !u.totp_enabled && u.enroll_deadline_ms > now + g * 1000).length;
    const exempted = exempt.value.split(",").map((s) => s.trim()).filter(Boolean);
    const exemptRoles = roles.filter((c) => c.checked).map((c) => c.value);
    const req = users.users.filter((u) => !u.totp_enabled && !exempted.includes(u.user) && !exemptRoles.includes(u.admin ? "admin" : "member")
      && (level.value === "required" || (level.value === "required_for_admins" && u.admin))).length;
    preview.textContent = req + " user(s) without TOTP would have to enrol; " +
      (g < mfa.grace_period_secs ? moved + " user(s) would see their deadline moved earlier." : "no deadline moves earlier.");
  }
  for (const i of [level, grace, exempt, ...roles]) i.addEventListener("input", affected);
  affected();
  const form = h("form", { class: "card", id: "mfa-policy" }, h("h2", { text: "MFA policy" }),
    h("label", { class: "field" }, "Level", level), graceF, exemptF, rolesF,
    h("label", { class: "field" }, "TOTP algorithm (new enrolments)", algorithm), h("label", { class: "field" }, "TOTP digits (new enrolments)", digits),
    trustF, stepF, preview, err,
    h("button", { class: "primary", type: "submit", text: "Save MFA policy" }));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    err.textContent = "";
    const body = Object.assign({}, mfa, {
      level: level.value, grace_period_secs: Number(grace.value), trusted_device_days: Number(trust.value),
      step_up_window_secs: Number(step.value), totp_algorithm: algorithm.value, totp_digits: Number(digits.value),
      exempt_roles: roles.filter((c) => c.checked).map((c) => c.value),
      exempt_users: exempt.value.split(",").map((s) => s.trim()).filter(Boolean),
    });
    try { Object.assign(mfa, await act("PUT", "/v1/admin/tenant/mfa", body)); toast("MFA policy saved"); affected(); }
    catch (e) { err.textContent = e.message; }
  });
  const secs = (id, label, v) => field(id, label + " (seconds, empty for none)", v, { type: "number", min: 1 });
  const [idleF, idle] = secs("s-idle", "Idle limit", sessions.idle_timeout_s);
  const [absF, abs] = secs("s-abs", "Absolute limit", sessions.absolute_timeout_s);
  const [aidleF, aidle] = secs("s-aidle", "Admin idle limit", sessions.admin_idle_timeout_s);
  const [aabsF, aabs] = secs("s-aabs", "Admin absolute limit", sessions.admin_absolute_timeout_s);
  const serr = h("p", { class: "error", id: "sessions-policy-error" });
  const num = (i) => (i.value.trim() === "" ? null : Number(i.value));
  const sform = h("form", { class: "card", id: "session-policy" }, h("h2", { text: "Session lifetimes" }),
    idleF, absF, aidleF, aabsF, serr, h("button", { class: "primary", type: "submit", text: "Save lifetimes" }));
  sform.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    serr.textContent = "";
    const body = { idle_timeout_s: num(idle), absolute_timeout_s: num(abs), admin_idle_timeout_s: num(aidle), admin_absolute_timeout_s: num(aabs) };
    try { await act("PUT", "/v1/admin/tenant/sessions", body); toast("Session lifetimes saved"); }
    catch (e) { serr.textContent = e.message; }
  });
  show(h("h1", { text: "Policy" }), h("div", { class: "grid cards" }, form, sform));
}

async function auditPage() {
  const actor = h("input", { id: "audit-actor", placeholder: "user" });
  const action = h("input", { id: "audit-action", placeholder: "e.g. session.revoke", list: "audit-actions" });
  const since = h("input", { id: "audit-since", type: "datetime-local" });
  const body = h("tbody", { id: "audit-body" });
  let records = [];
  let next = null;
  function row(r) {
    return h("tr", { "data-audit": r.id }, h("td", { text: when(r.at_ms) }), h("td", { text: r.actor || "—" }),
      h("td", { text: r.action }), h("td", { text: r.target || "" }), h("td", { text: r.result }), h("td", { text: r.ip || "" }));
  }
  function render() {
    const t = since.value ? Date.parse(since.value + "Z") : 0;
    body.replaceChildren(...records.filter((r) => r.at_ms >= t).map(row));
  }
  async function load(more) {
    const q = new URLSearchParams({ limit: "100" });
    if (actor.value.trim()) q.set("actor", actor.value.trim());
    if (action.value.trim()) q.set("action", action.value.trim());
    if (more && next) q.set("before", String(next));
    const page = await call("GET", "/v1/admin/audit?" + q);
    records = more ? records.concat(page.records) : page.records;
    next = page.next;
    older.disabled = !next;
    render();
  }
  const older = h("button", { type: "button", id: "audit-older", text: "Older", onclick: () => load(true).catch((e) => toast(e.message)) });
  function download(name, type, text) {
    const a = h("a", { href: URL.createObjectURL(new Blob([text], { type })), download: name });
    document.body.append(a); a.click(); a.remove();
  }
  const csvCell = (v) => '"' + String(v === null || v === undefined ? "" : v).replace(/"/g, '""') + '"';
  const exportJson = h("button", { type: "button", id: "audit-export-json", text: "Export JSON lines", onclick: () =>
    download("audit.jsonl", "application/x-ndjson", records.map((r) => JSON.stringify(r)).join("\n") + "\n") });
  const exportCsv = h("button", { type: "button", id: "audit-export-csv", text: "Export CSV", onclick: () => {
    const cols = ["id", "at_ms", "actor", "actor_session", "action", "target", "result", "ip"];
    download("audit.csv", "text/csv", [cols.join(",")].concat(records.map((r) => cols.map((c) => csvCell(r[c])).join(","))).join("\n") + "\n");
  } });
  const form = h("form", { class: "row", id: "audit-filter" }, h("label", {}, "Actor", actor), h("label", {}, "Action", action),
    h("label", {}, "Since (UTC)", since), h("button", { class: "primary", type: "submit", text: "Search" }), exportJson, exportCsv);
  form.addEventListener("submit", (ev) => { ev.preventDefault(); load(false).catch((e) => toast(e.message)); });
  show(h("h1", { text: "Audit log" }), form,
    h("table", { id: "audit" }, h("thead", {}, h("tr", {}, ["When", "Actor", "Action", "Target", "Result", "Address"].map((t) => h("th", { text: t })))), body),
    h("div", { class: "row" }, older));
  await load(false);
  state.onAudit = (rec) => { if (!actor.value && !action.value && rec) { records.unshift(rec); render(); } };
}

async function healthPage() {
  const ready = await fetch("/readyz", { headers: { accept: "application/json" } });
  const readyBody = await ready.json().catch(() => ({}));
  const metrics = await fetch("/metrics").then((r) => r.text()).catch(() => "");
  const values = {};
  for (const line of metrics.split("\n")) {
    const m = /^([a-z_]+)(\{[^}]*\})?\s+([0-9.eE+-]+)$/.exec(line);
    if (m) values[m[1] + (m[2] || "")] = Number(m[3]);
  }
  const pick = (prefix) => Object.entries(values).filter(([k]) => k.startsWith(prefix));
  const stat = (label, value) => h("div", { class: "stat" }, h("span", { class: "muted", text: label }), h("b", { text: value }));
  const checks = Object.entries(readyBody.checks || readyBody || {}).map(([k, v]) =>
    h("tr", {}, h("td", { text: k }), h("td", { text: typeof v === "object" ? JSON.stringify(v) : String(v) })));
  const nodes = h("tbody", { id: "cluster-body" });
  const summary = h("p", { class: "muted", id: "cluster-summary" });
  async function loadCluster() {
    const c = await call("GET", "/v1/admin/cluster");
    const total = c.nodes.reduce((n, x) => n + (x.connections || 0), 0);
    summary.textContent = c.nodes.length + " node(s) on the " + c.bus + " bus" + (c.bus_healthy ? "" : " (this node's link is DOWN)") +
      ", " + total + " connection(s) in all; answered by " + c.node;
    nodes.replaceChildren(...c.nodes.map((n) => h("tr", { "data-node": n.id, class: n.this ? "this" : null },
      h("td", { text: n.id + (n.this ? " (this node)" : "") }), h("td", { class: "connections", text: n.connections ?? "—" }),
      h("td", { text: n.store ?? "—" }), h("td", { text: n.bus_healthy === undefined || n.bus_healthy === null ? "—" : (n.bus_healthy ? "up" : "down") }),
      h("td", { text: n.version ?? "—" }), h("td", { text: when(n.started_ms) }), h("td", { text: when(n.seen_ms) }))));
  }
  show(h("h1", { text: "Health" }),
    h("div", { class: "grid", id: "health-stats" },
      stat("This node", ready.ok ? "ready" : "not ready (" + ready.status + ")"),
      ...["hush_connections", "hush_logins_total", "hush_envelopes_accepted_total", "hush_queue_depth", "hush_actor_failures_total", "hush_actor_restarts_total"]
        .flatMap((p) => pick(p).map(([k, v]) => stat(k, v)))),
    h("h2", { text: "Cluster" }), summary,
    h("table", { id: "cluster" },
      h("thead", {}, h("tr", {}, ["Node", "Connections", "Store", "Bus", "Version", "Started", "Last heartbeat"].map((t) => h("th", { text: t })))),
      nodes),
    h("h2", { text: "Readiness" }), h("table", { id: "readiness" }, h("tbody", {}, checks)));
  await loadCluster();
  // Nodes report themselves every second: refresh while this page is shown.
  state.timer = setInterval(() => loadCluster().catch(() => {}), 2000);
}

// ---- start -----------------------------------------------------------------------------------

window.addEventListener("hashchange", route);
document.addEventListener("DOMContentLoaded", async () => {
  document.getElementById("signout").addEventListener("click", signOut);
  try {
    await signedIn(await call("GET", "/console/session"));
  } catch (e) {
    signInPage("");
  }
});
