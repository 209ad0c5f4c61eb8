/* Prompt upload: send the recording as the body, play the converted preview, then apply. */
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("prompt-upload");
  if (!form) return;
  const csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const file = document.getElementById("prompt-file").files[0];
    const name = document.getElementById("prompt-name").value;
    const problems = document.getElementById("upload-problems");
    problems.textContent = "";
    if (!file) return;
    const url = "/prompts/upload?name=" + encodeURIComponent(name) + "&filename=" + encodeURIComponent(file.name);
    const response = await fetch(url, {
      method: "PUT", body: file, credentials: "same-origin",
      headers: { "Accept": "application/json", "X-CSRF-Token": csrf, "Content-Type": "application/octet-stream" },
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) { problems.textContent = data.error || ("HTTP " + response.status); return; }
    document.getElementById("preview-name").textContent = data.name;
    document.getElementById("preview-seconds").textContent = data.seconds;
    document.getElementById("preview-id").value = data.preview_id;
    document.getElementById("preview-audio").src = data.preview_url;
    document.getElementById("prompt-preview").hidden = false;
  });
});
