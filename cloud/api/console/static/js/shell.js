// The frame around every tenant page: signing out.
import { api } from "console/lib.js";

document.getElementById("sign-out")?.addEventListener("click", async () => {
  try {
    await api("POST", "/auth/logout");
  } finally {
    location.assign("/console/login");
  }
});
