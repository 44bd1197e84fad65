// Appends each server-sent event to the page as it arrives.
const events = new EventSource("/events");
events.onmessage = (event) => {
  document.getElementById("events").textContent += event.data + "\n";
};
