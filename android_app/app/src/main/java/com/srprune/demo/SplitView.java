package com.srprune.demo;

import android.content.Context;
import android.graphics.Bitmap;
import android.graphics.Canvas;
import android.graphics.Color;
import android.graphics.Paint;
import android.graphics.Rect;
import android.view.MotionEvent;
import android.view.View;

/** Bicubic on the left of a draggable divider, the model's result on the right, same pixels scaled alike. */
public final class SplitView extends View {
    private Bitmap left, right;
    private float split = 0.5f;
    private final Paint line = new Paint(), label = new Paint();
    private final Rect src = new Rect(), dst = new Rect();

    public SplitView(Context context) {
        super(context);
        line.setColor(Color.WHITE);
        line.setStrokeWidth(4f);
        label.setColor(Color.YELLOW);
        label.setTextSize(36f);
    }

    public void show(Bitmap bicubic, Bitmap result) {
        left = bicubic;
        right = result;
        invalidate();
    }

    @Override
    public boolean onTouchEvent(MotionEvent e) {
        if (getWidth() > 0) {
            split = Math.max(0f, Math.min(1f, e.getX() / getWidth()));
            invalidate();
        }
        return true;
    }

    @Override
    protected void onDraw(Canvas canvas) {
        if (left == null || right == null) return;
        // fit the frame in the view, keeping its aspect ratio
        float k = Math.min(getWidth() / (float) right.getWidth(), getHeight() / (float) right.getHeight());
        int w = (int) (right.getWidth() * k), h = (int) (right.getHeight() * k);
        int x0 = (getWidth() - w) / 2, y0 = (getHeight() - h) / 2, xs = x0 + (int) (w * split);
        int srcSplit = (int) (right.getWidth() * split);
        src.set(0, 0, srcSplit, left.getHeight());
        dst.set(x0, y0, xs, y0 + h);
        canvas.drawBitmap(left, src, dst, null);
        src.set(srcSplit, 0, right.getWidth(), right.getHeight());
        dst.set(xs, y0, x0 + w, y0 + h);
        canvas.drawBitmap(right, src, dst, null);
        canvas.drawLine(xs, y0, xs, y0 + h, line);
        canvas.drawText("bicubic", x0 + 16, y0 + 48, label);
        canvas.drawText("model", x0 + w - 140, y0 + 48, label);
    }
}
