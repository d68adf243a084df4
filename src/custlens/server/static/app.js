// custlens dashboard: draws Vega-Lite charts, the segment builder, and the upload preview.
(function () {
  "use strict";
  const lang = document.body.dataset.lang || "zh";
  const L = (zh, en) => (lang === "zh" ? zh : en);

  function drawCharts() {
    if (typeof vegaEmbed !== "function") return;
    document.querySelectorAll(".chart[data-spec]").forEach((el) => {
      try {
        const spec = JSON.parse(el.dataset.spec);
        vegaEmbed(el, spec, { actions: false, renderer: "svg" }).then(() => el.classList.add("drawn"));
      } catch (e) { el.textContent = String(e); }
    });
  }

  async function api(path, body, isForm) {
    const opt = { method: body ? "POST" : "GET", credentials: "same-origin", headers: {} };
    if (body && isForm) opt.body = body;
    else if (body) { opt.body = JSON.stringify(body); opt.headers["Content-Type"] = "application/json"; }
    const r = await fetch(path + (path.includes("?") ? "&" : "?") + "lang=" + lang, opt);
    const data = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(data.what || data.message || r.statusText);
    return data;
  }

  function esc(s) { return String(s == null ? "" : s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]); }

  // ----- segment builder -----
  function builder() {
    const root = document.getElementById("builder");
    if (!root) return;
    const segs = JSON.parse(root.dataset.segments || "[]");
    const tags = JSON.parse(root.dataset.tags || "[]");
    const rules = document.getElementById("rules");
    const kinds = [["segment8", L("RFM 分群", "RFM segment")], ["tag", L("标签", "Tag")],
      ["member_level", L("会员等级", "Member level")], ["province", L("省份", "Province")],
      ["order_count", L("订单数 ≥", "Orders ≥")], ["revenue", L("消费额 ≥", "Revenue ≥")]];
    function addRule(kind, value) {
      const row = document.createElement("div");
      row.className = "rule";
      const sel = document.createElement("select");
      sel.className = "rule-kind";
      kinds.forEach(([k, label]) => { const o = document.createElement("option"); o.value = k; o.textContent = label; sel.appendChild(o); });
      sel.value = kind || "segment8";
      const holder = document.createElement("span");
      const del = document.createElement("button"); del.type = "button"; del.className = "secondary"; del.textContent = "✕";
      function valueInput() {
        holder.innerHTML = "";
        let inp;
        if (sel.value === "segment8" || sel.value === "tag") {
          inp = document.createElement("select");
          (sel.value === "segment8" ? segs : tags.map((x) => [x, x])).forEach(([k, label]) => {
            const o = document.createElement("option"); o.value = k; o.textContent = label; inp.appendChild(o); });
        } else { inp = document.createElement("input"); inp.size = 10; }
        inp.className = "rule-value";
        if (value != null) { inp.value = value; value = null; }
        inp.addEventListener("change", preview); inp.addEventListener("input", preview);
        holder.appendChild(inp);
      }
      sel.addEventListener("change", () => { valueInput(); preview(); });
      del.addEventListener("click", () => { row.remove(); preview(); });
      valueInput();
      row.append(sel, holder, del);
      rules.appendChild(row);
    }
    function rule() {
      const all = [];
      rules.querySelectorAll(".rule").forEach((row) => {
        const k = row.querySelector(".rule-kind").value, v = row.querySelector(".rule-value").value;
        if (v === "") return;
        if (k === "tag") all.push({ tag: v });
        else if (k === "order_count" || k === "revenue") all.push({ column: k, op: ">=", value: Number(v) });
        else all.push({ column: k, op: "==", value: v });
      });
      return all.length ? { all } : null;
    }
    let timer = null;
    function preview() {
      clearTimeout(timer);
      timer = setTimeout(async () => {
        const r = rule(), out = document.getElementById("seg-size"), share = document.getElementById("seg-share");
        if (!r) { out.textContent = "—"; share.textContent = ""; return; }
        out.textContent = "…";
        try {
          const d = await api("/api/v1/segments/preview", { rule: r });
          out.textContent = d.suppressed ? L("< 最小组规模", "< minimum group size") : d.size.toLocaleString();
          share.textContent = d.share != null ? "(" + (100 * d.share).toFixed(1) + "% / " + d.total.toLocaleString() + ")" : "";
        } catch (e) { out.textContent = e.message; }
      }, 200);
    }
    document.getElementById("add-rule").addEventListener("click", () => { addRule(); preview(); });
    document.getElementById("seg-export").addEventListener("click", async () => {
      const o = document.getElementById("seg-export-out");
      try {
        const d = await api("/api/v1/segments/export", { rule: rule(), campaign: "dashboard" });
        o.textContent = d.n + " ids · " + d.ids.slice(0, 3).join(", ") + (d.n > 3 ? " …" : "");
      } catch (e) { o.textContent = e.message; }
    });
    addRule("segment8", "important_value");
    preview();
  }

  // ----- upload with mapping preview -----
  function upload() {
    const btn = document.getElementById("up-preview");
    if (!btn) return;
    let uploadId = null, table = null;
    btn.addEventListener("click", async () => {
      const f = document.getElementById("up-file").files[0], out = document.getElementById("up-out");
      if (!f) return;
      const fd = new FormData(); fd.append("file", f);
      out.textContent = "…";
      try {
        const d = await api("/api/v1/ingest/preview", fd, true);
        uploadId = d.upload_id; table = d.table;
        const m = (d.mapping && d.mapping.mapped) || {};
        const pii = Object.fromEntries((d.pii || []).map((p) => [p.header, p.kind]));
        let h = "<p>" + esc(d.file) + " · " + esc(d.format) + (d.encoding ? " · " + esc(d.encoding) : "") + " → <b>" + esc(d.table || "?") + "</b></p>";
        if (d.mapping_error) h += '<p class="denied">' + esc(d.mapping_error) + "</p>";
        h += '<table id="up-mapping"><thead><tr><th>' + L("源列", "Source column") + "</th><th>" + L("标准列", "Canonical") + "</th><th>PII</th></tr></thead><tbody>";
        d.headers.forEach((x) => { h += "<tr><td>" + esc(x) + "</td><td>" + esc(m[x] || L("额外列", "extra")) + "</td><td>" + esc(pii[x] || "") + "</td></tr>"; });
        h += "</tbody></table>";
        if (d.rows.length) {
          h += '<div class="scroll"><table><thead><tr>' + d.headers.map((x) => "<th>" + esc(x) + "</th>").join("") + "</tr></thead><tbody>";
          d.rows.forEach((r) => { h += "<tr>" + d.headers.map((x) => "<td>" + esc(r[x]) + "</td>").join("") + "</tr>"; });
          h += "</tbody></table></div>";
        }
        out.innerHTML = h;
        document.getElementById("up-load").hidden = !d.table || !!d.mapping_error;
      } catch (e) { out.textContent = e.message; }
    });
    document.getElementById("up-load").addEventListener("click", async () => {
      const o = document.getElementById("up-result");
      const fd = new FormData(); fd.append("upload_id", uploadId); if (table) fd.append("table", table);
      try {
        const d = await api("/api/v1/ingest", fd, true);
        o.textContent = d.loads.map((l) => l.table + ": " + L("读取", "read") + " " + l.rows_read + " = " + l.loaded + " + " + l.duplicates + " + " + l.quarantined).join("; ");
      } catch (e) { o.textContent = e.message; }
    });
  }

  // ----- parts loaded after the page (slow analyses): a chart or a table from the JSON API -----
  function table(rows, limit) {
    if (!rows || !rows.length) return '<p class="empty">—</p>';
    const cols = Object.keys(rows[0]);
    let h = '<div class="scroll"><table><thead><tr>' + cols.map((c) => "<th>" + esc(c) + "</th>").join("") + "</tr></thead><tbody>";
    rows.slice(0, limit || 20).forEach((r) => {
      h += "<tr>" + cols.map((c) => {
        const v = r[c];
        if (typeof v === "number") return '<td class="num">' + (Number.isInteger(v) ? v.toLocaleString() : v.toFixed(3)) + "</td>";
        return "<td>" + esc(Array.isArray(v) ? v.join(" → ") : v) + "</td>";
      }).join("") + "</tr>";
    });
    return h + "</tbody></table></div>";
  }
  function lazy() {
    document.querySelectorAll(".lazy[data-url]").forEach(async (el) => {
      try {
        const d = await api(el.dataset.url);
        if (el.dataset.kind === "chart" && d.chart && typeof vegaEmbed === "function") {
          el.innerHTML = ""; const div = document.createElement("div"); div.className = "chart"; el.appendChild(div);
          await vegaEmbed(div, d.chart, { actions: false, renderer: "svg" }); div.classList.add("drawn");
        } else { el.innerHTML = table(d.rows, 10); }
        el.classList.add("loaded");
      } catch (e) { el.innerHTML = '<p class="denied">' + esc(e.message) + "</p>"; el.classList.add("loaded"); }
    });
  }

  document.addEventListener("DOMContentLoaded", () => { drawCharts(); lazy(); builder(); upload(); });
})();
