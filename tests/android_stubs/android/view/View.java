package android.view;

import android.content.Context;
import android.graphics.Canvas;

public class View {
    public static final int VISIBLE = 0;
    public static final int GONE = 8;
    public interface OnClickListener { void onClick(View v); }
    public View(Context context) { throw new RuntimeException("Stub!"); }
    public final int getWidth() { throw new RuntimeException("Stub!"); }
    public final int getHeight() { throw new RuntimeException("Stub!"); }
    public void invalidate() { throw new RuntimeException("Stub!"); }
    public void setVisibility(int visibility) { throw new RuntimeException("Stub!"); }
    public void setOnClickListener(OnClickListener l) { throw new RuntimeException("Stub!"); }
    public boolean onTouchEvent(MotionEvent event) { throw new RuntimeException("Stub!"); }
    protected void onDraw(Canvas canvas) { throw new RuntimeException("Stub!"); }
}
