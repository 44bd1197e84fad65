class PagesController < ActionController::Base
  def home
    render plain: "hello from rails\n"
  end
end
