package android.view;

public final class MotionEvent {
    public final float getX() { throw new RuntimeException("Stub!"); }
}
