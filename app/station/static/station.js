// The review station: one key (0-9) per class, and the garment's box drawn over the photo.
"use strict";

document.addEventListener("keydown", (event) => {
  if (event.altKey || event.ctrlKey || event.metaKey || event.target instanceof HTMLInputElement) {
    return;
  }
  const button = document.querySelector(`#classes button[data-key="${event.key}"]`);
  if (button) {
    event.preventDefault();
    button.click();
  }
});

function drawBox() {
  const figure = document.querySelector(".photo[data-box]");
  const image = document.getElementById("photo");
  if (!figure || !image || !image.naturalWidth) {
    return;
  }
  // The box is in the photo's own pixels; the photo is shown scaled, so place it in percent.
  const [left, top, right, bottom] = figure.dataset.box.split(",").map(Number);
  const box = figure.querySelector(".box");
  box.style.left = `${(100 * left) / image.naturalWidth}%`;
  box.style.top = `${(100 * top) / image.naturalHeight}%`;
  box.style.width = `${(100 * (right - left)) / image.naturalWidth}%`;
  box.style.height = `${(100 * (bottom - top)) / image.naturalHeight}%`;
  box.hidden = false;
}

const photo = document.getElementById("photo");
if (photo) {
  if (photo.complete) {
    drawBox();
  } else {
    photo.addEventListener("load", drawBox);
  }
}
