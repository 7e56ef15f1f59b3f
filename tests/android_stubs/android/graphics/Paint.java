package android.graphics;

public class Paint {
    public static final int FILTER_BITMAP_FLAG = 2;
    public Paint() { throw new RuntimeException("Stub!"); }
    public Paint(int flags) { throw new RuntimeException("Stub!"); }
    public void setColor(int color) { throw new RuntimeException("Stub!"); }
    public void setStrokeWidth(float width) { throw new RuntimeException("Stub!"); }
    public void setTextSize(float textSize) { throw new RuntimeException("Stub!"); }
}
